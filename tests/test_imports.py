"""The import structure of the project's packages, read statically (ast) and checked live.

- No import cycles: no cycle may contain an import made at module level (including under
  ``TYPE_CHECKING``), even when the rest of the cycle is imports deferred into functions
  (``load -> wandb_source`` inside a function, ``wandb_source -> load`` at the top was such
  a cycle). Cycles made only of deferred imports cannot fail at import time; they are
  listed by ``deferred_only_cycles`` for review, not failed.
- ``harness/`` reaches the workloads (efficientnet, hrnet) only through the registry
  strings in ``harness/tasks.py``; ``analysis/`` imports no training code, only
  ``harness.runformat``.
- ``harness --help``, ``status``, ``sweep --dry-run`` and ``analyze`` never import torch
  (the light commands not pandas or matplotlib either), checked in a fresh interpreter; nor
  does the launcher of a ``harness train --strategy ddp`` run on the CPU (its ranks do).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.devices import gpu_driver_present
from harness.launcher.manifest import write_manifest
from harness.rundir import atomic_write_json
from harness.tasks import TASKS, WORKLOADS
from tests.analysis_fixtures import write_sweep

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "analysis", "efficientnet", "hrnet", "benchmarks")
# Deferred imports known to close a cycle, each waiting for a fix; the list may only shrink (the
# test fails on a listed import that no longer exists). Edge (importer, imported) -> why.
KNOWN_CYCLE_EDGES = {
    # `harness profile` reuses `harness train`, while the trainer imports harness.profiling
    # (StepProfiler) at module level; fix: give `profile` its own light CLI module.
    ("harness.profiling", "harness.cli"): "cmd_profile calls harness.cli.cmd_train",
}
WORKLOAD_PACKAGES = ("efficientnet", "hrnet")
# harness modules that still import a workload module directly (lazily, inside a function), each
# waiting for a registry hook. The list may only shrink: the test fails on any entry not here, and
# on an entry here that no longer imports what it says.
DIRECT_WORKLOAD_IMPORTS = {
    # per-workload pictures (class names, skeleton, heatmap peaks): wants a Workload visualisation hook
    "harness.vis": ["efficientnet.data", "hrnet.inference", "hrnet.transforms"],
    # writes the synthetic FER set it measures on: wants the data hook of the registry
    "harness.commbench_study": ["efficientnet.synth"],
    # benchmarks the workloads' models by name: wants a registry hook listing each workload's models
    "harness.benchmodel.catalogue": ["efficientnet.backbones", "efficientnet.model", "hrnet.model"],
}


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for file in (REPO / package).rglob("*.py"):
            parts = list(file.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = file
    return modules


MODULES = _modules()


def _project_module(name: str) -> str | None:
    """The project module an import of ``name`` loads (``a.b.func`` -> ``a.b``), or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, module_level_only: bool = False) -> set[str]:
    """Project modules ``module`` imports anywhere in its source (``module_level_only``: outside
    functions, i.e. when the module itself is imported)."""
    file = MODULES[module]
    tree = ast.parse(file.read_text(), str(file))
    nodes = _module_level_nodes(tree) if module_level_only else ast.walk(tree)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module if file.name == "__init__.py" else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}".rstrip(".")
            names = [f"{base}.{alias.name}" for alias in node.names] or [base]
        else:
            continue
        found.update(t for t in map(_project_module, names) if t and t != module)
    return found


def _module_level_nodes(tree: ast.Module) -> list[ast.AST]:
    """Statements that run when the module is imported: all but function bodies."""
    nodes: list[ast.AST] = []
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        nodes.append(node)
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))
    return nodes


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def cycles_through_module_level_imports(
    graph: dict[str, set[str]], module_level: dict[str, set[str]]
) -> list[list[str]]:
    """The cycles of ``graph`` (every import) that contain a module-level import: an edge
    u -> v lies on a cycle exactly when u and v share a strongly connected component."""
    component = {m: i for i, members in enumerate(import_cycles(graph)) for m in members}
    bad = {
        component[u]
        for u, targets in module_level.items()
        for v in targets
        if u in component and component.get(v) == component[u]
    }
    return [members for i, members in enumerate(import_cycles(graph)) if i in bad]


def deferred_only_cycles() -> list[list[str]]:
    """Cycles made only of imports deferred into functions (reported, not failed)."""
    graph = {module: imports_of(module) for module in MODULES}
    module_level = {module: imports_of(module, module_level_only=True) for module in MODULES}
    bad = cycles_through_module_level_imports(graph, module_level)
    return [c for c in import_cycles(graph) if c not in bad]


def test_cycle_rule_tells_module_level_from_deferred_imports() -> None:
    graph = {"load": {"wandb_source"}, "wandb_source": {"load"}, "cli": {"job"}, "job": {"cli"}}
    module_level = {"load": set(), "wandb_source": {"load"}, "cli": set(), "job": set()}
    assert cycles_through_module_level_imports(graph, module_level) == [["load", "wandb_source"]]


def test_no_import_cycle_through_a_module_level_import() -> None:
    graph = {module: imports_of(module) for module in MODULES}
    module_level = {module: imports_of(module, module_level_only=True) for module in MODULES}
    for importer, imported in KNOWN_CYCLE_EDGES:
        assert imported in graph[importer] - module_level[importer], (importer, imported)
        graph[importer] = graph[importer] - {imported}
    assert graph["analysis.report"] and module_level["analysis.report"]  # guards the reader itself
    # analysis.cli imports analysis.report inside run_analyze: an edge of the graph, not module level.
    assert "analysis.report" in graph["analysis.cli"] - module_level["analysis.cli"]
    assert cycles_through_module_level_imports(graph, module_level) == []


def test_harness_reaches_workloads_only_through_the_registry() -> None:
    offenders = {
        m: sorted(t for t in imports_of(m) if t.split(".")[0] in WORKLOAD_PACKAGES)
        for m in MODULES
        if m.split(".")[0] == "harness"
    }
    unlisted = {
        m: [t for t in targets if t not in DIRECT_WORKLOAD_IMPORTS.get(m, ())]
        for m, targets in offenders.items()
    }
    assert {m: t for m, t in unlisted.items() if t} == {}
    assert [m for m in DIRECT_WORKLOAD_IMPORTS if not offenders.get(m)] == []  # the list only shrinks
    for target in TASKS.values():
        module, _, cls = target.partition(":")
        assert module in MODULES and f"class {cls}(" in MODULES[module].read_text(), target
    for name, module in WORKLOADS.items():
        assert module in MODULES, module
        assert importlib.util.find_spec(module) is not None
        assert TASKS[name].split(".")[0] == module.split(".")[0]


def test_analysis_imports_no_training_code() -> None:
    allowed = ("analysis", "harness.runformat")
    training = {
        m: sorted(t for t in imports_of(m) if t.split(".")[0] != "analysis" and t not in allowed)
        for m in MODULES
        if m.split(".")[0] == "analysis"
    }
    assert {m: t for m, t in training.items() if t} == {}
    assert "import" not in "".join(
        line
        for line in (REPO / "harness/__init__.py").read_text().splitlines()
        if not line.lstrip().startswith(("#", '"', "'"))
    )


def test_pose_name_lists_match_the_registries() -> None:
    from hrnet.blocks import BLOCKS
    from hrnet.defaults import BLOCK_NAMES, MODEL_NAMES
    from hrnet.model import MODELS

    assert sorted(MODELS) == sorted(MODEL_NAMES) and sorted(BLOCKS) == sorted(BLOCK_NAMES)


_PROBE = """
import json, sys
from harness.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
heavy = ("torch", "pandas", "matplotlib", "scipy", "submitit", "wandb")
print(json.dumps({"code": code, "loaded": [m for m in heavy if m in sys.modules]}))
"""


def harness_in_fresh_interpreter(*args: str) -> dict:
    """Run ``harness ARGS`` in a new interpreter; its exit code and which heavy modules it loaded."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def sweep_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("light")
    finished = write_sweep(root, "done", [{"gpus": 1}, {"gpus": 2}])
    watched = root / "watched"
    manifest = {
        "version": 1,
        "name": "watched",
        "backend": "local",
        "arrays": [],
        "runs": {"ddp-g1-b32-s0": {"name": "ddp-g1-b32-s0", "job_id": None, "submissions": []}},
    }
    atomic_write_json(watched / "runs" / "ddp-g1-b32-s0" / "status.json", {"state": "completed"})
    write_manifest(watched, manifest)
    return {"finished": finished, "watched": watched, "root": root}


@pytest.mark.parametrize("command", ["--help", "status", "sweep-dry-run-fer", "sweep-dry-run-pose"])
def test_light_commands_import_no_torch_pandas_or_matplotlib(
    command: str, sweep_dirs: dict[str, Path]
) -> None:
    args = {
        "--help": ["--help"],
        "status": ["status", str(sweep_dirs["watched"])],
        "sweep-dry-run-fer": [
            "sweep",
            "configs/sweeps/fer_synthetic.yaml",
            "--backend",
            "local",
            "--dry-run",
            "--root",
            str(sweep_dirs["root"]),
        ],
        "sweep-dry-run-pose": [
            "sweep",
            "configs/sweeps/hrnet_synthetic.yaml",
            "--backend",
            "local",
            "--dry-run",
            "--root",
            str(sweep_dirs["root"]),
        ],
    }[command]
    result = harness_in_fresh_interpreter(*args)
    assert result["code"] == 0
    assert not {"torch", "pandas", "matplotlib", "scipy", "wandb"} & set(result["loaded"]), result


def test_analyze_imports_no_torch(sweep_dirs: dict[str, Path], tmp_path: Path) -> None:
    result = harness_in_fresh_interpreter(
        "analyze", str(sweep_dirs["finished"]), "--out", str(tmp_path), "--format", "png"
    )
    assert result["code"] == 0 and (tmp_path / "report.md").is_file()
    assert "pandas" in result["loaded"]  # it did the work ...
    assert "torch" not in result["loaded"]  # ... without the training stack


@pytest.mark.skipif(gpu_driver_present(), reason="with a GPU driver the launcher asks torch for the devices")
def test_a_ddp_launcher_imports_no_torch_only_its_ranks_do(fer_csv_root: str, tmp_path: Path) -> None:
    """`harness train --strategy ddp` on the CPU decides, starts the ranks from the fork server
    and waits: the ranks train, the launcher never pays for importing torch."""
    result = harness_in_fresh_interpreter(
        "train",
        "--config",
        "configs/fer/effnet_b0_synthetic.yaml",
        "--strategy",
        "ddp",
        "--gpus",
        "2",
        "--output-dir",
        str(tmp_path),
        "--run-name",
        "ddp2",
        "DATASET.ROOT",
        fer_csv_root,
        "TRAIN.EPOCHS",
        "1",
        "TRAIN.MAX_STEPS_PER_EPOCH",
        "2",
        "LOG.WANDB.MODE",
        "disabled",
    )
    assert result["code"] == 0
    assert json.loads((tmp_path / "ddp2/status.json").read_text())["state"] == "completed"
    assert "torch" not in result["loaded"], result
