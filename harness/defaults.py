"""The engine's configuration defaults: every key the harness itself reads.

Workloads add their own blocks (``MODEL``, ``DATASET``, ``TEST``...) on a clone of
``_C``; nothing ever mutates ``_C`` itself (``harness.config.get_cfg`` clones it).
"""

from yacs.config import CfgNode as CN

_C = CN()
# Workload name, a key of harness.tasks.TASKS ("fer" or "pose").
_C.TASK = "fer"
# Directory under which the run directory ``OUTPUT_DIR/<RUN_NAME>`` is made.
_C.OUTPUT_DIR = "runs"
# Run directory name; empty derives "<task>-<strategy>-g<gpus>-b<batch>-s<seed>".
_C.RUN_NAME = ""
# Sweep this run belongs to (set by the launcher); used as the W&B group.
_C.SWEEP = ""
# Seeds the model init, the sampler order and every data augmentation.
_C.SEED = 0

_C.DIST = CN()
# single: one device, no wrapper. dp: nn.DataParallel in one process.
# ddp: DistributedDataParallel, one process per device.
_C.DIST.STRATEGY = "single"
# Total device count over all nodes. On a CPU-only machine, the number of gloo
# processes for ddp.
_C.DIST.GPUS = 1
# Node count; GPUS must divide evenly across nodes.
_C.DIST.NODES = 1
# auto picks nccl when CUDA is available and gloo otherwise.
_C.DIST.BACKEND = "auto"
# Convert BatchNorm to SyncBatchNorm under ddp.
_C.DIST.SYNC_BN = False
# DDP gradient bucket size (PyTorch's default is 25 MB).
_C.DIST.BUCKET_CAP_MB = 25
_C.DIST.FIND_UNUSED_PARAMETERS = False
# DDP gradient_as_bucket_view: gradients are views into the all-reduce buckets (saves one
# gradient-sized copy per step and that much memory). Bool.
_C.DIST.GRADIENT_AS_BUCKET_VIEW = False
# DDP static_graph: the set of used parameters never changes, so DDP may skip per-step
# graph checks and reorder buckets after the first step. Bool.
_C.DIST.STATIC_GRAPH = False
# Seconds a collective may wait before the process group fails it (the rendezvous too).
# The heartbeat watchdog fails the run after DIST.TIMEOUT_S / 2 without a beat from a rank.
_C.DIST.TIMEOUT_S = 600

_C.TRAIN = CN()
_C.TRAIN.EPOCHS = 10
# Per-device batch per optimizer step (micro-batch = this / GRAD_ACCUM).
# dp loads BATCH_SIZE_PER_GPU * GPUS per step, as official HRNet does.
_C.TRAIN.BATCH_SIZE_PER_GPU = 32
# sgd, sgd_nesterov, adam, adamw, adagrad, adadelta, rmsprop.
_C.TRAIN.OPTIMIZER = "sgd"
# Learning rate at LR_BASE_BATCH global batch, before the LR_SCALING rule.
_C.TRAIN.LR = 0.1
_C.TRAIN.LR_BASE_BATCH = 256
# none | linear | sqrt, applied to global batch / LR_BASE_BATCH.
_C.TRAIN.LR_SCALING = "none"
# Linear warmup from 0 to the scaled LR over this many (fractional) epochs.
_C.TRAIN.WARMUP_EPOCHS = 0.0
# multistep | cosine | none.
_C.TRAIN.SCHEDULER = "multistep"
# multistep: epochs at which the LR is multiplied by LR_FACTOR.
_C.TRAIN.LR_STEP = []
_C.TRAIN.LR_FACTOR = 0.1
# cosine: final LR as a fraction of the scaled LR.
_C.TRAIN.MIN_LR_RATIO = 0.0
# Weight decay (not on biases and norm weights). Ignored by adam, as in official
# HRNet; use adamw for decoupled decay.
_C.TRAIN.WD = 0.0
_C.TRAIN.MOMENTUM = 0.9
# none | fp16 | bf16 (autocast; fp16 adds a GradScaler and needs CUDA).
_C.TRAIN.AMP = "none"
_C.TRAIN.GRAD_ACCUM = 1
# Max gradient norm; 0 disables clipping.
_C.TRAIN.CLIP_GRAD = 0.0
_C.TRAIN.CHANNELS_LAST = False
_C.TRAIN.COMPILE = False
# Stop each epoch after this many optimizer steps (0 = the full epoch); for
# throughput sweeps that need no full pass over the data.
_C.TRAIN.MAX_STEPS_PER_EPOCH = 0
# What a non-finite (NaN/Inf) loss or gradient does, checked on the device without a per-step
# sync: stop = fail at the next log window or checkpoint (no checkpoint is written with it);
# skip = that step's gradients are zeroed on the device (fp16: the GradScaler skips the step),
# and the count is logged as train/nonfinite_steps (docs/reliability.md).
_C.TRAIN.NAN_POLICY = "stop"

_C.EVAL = CN()
# Validate every N epochs (and always after the last); 0 disables validation.
_C.EVAL.EVERY_EPOCHS = 1
# Per-device validation batch; 0 uses TRAIN.BATCH_SIZE_PER_GPU.
_C.EVAL.BATCH_SIZE_PER_GPU = 0
# Validate under TRAIN.AMP's autocast; false validates in fp32 (as the FER study did).
_C.EVAL.AMP = True
# Pictures of the first validation batch's predictions written to <run dir>/vis/ (and W&B
# val/examples) at each validation; 0 disables.
_C.EVAL.VIS_SAMPLES = 8

_C.DATA = CN()
_C.DATA.NUM_WORKERS = 2
_C.DATA.PIN_MEMORY = True
_C.DATA.PREFETCH_FACTOR = 2
_C.DATA.PERSISTENT_WORKERS = True
# A bad sample found when the dataset is built (pose: a box with non-positive size, a
# non-numeric or wrong-length keypoint list, an annotation for an image not in the set, a
# missing image file): "error" stops with the file and annotation id; "skip" drops it and
# counts it in the log, run.json ("skipped_samples") and `harness data summary`.
_C.DATA.ON_BAD_SAMPLE = "error"

_C.LOG = CN()
# Write a train record to metrics.jsonl (and W&B) every N optimizer steps.
_C.LOG.EVERY_N_STEPS = 10
# Steps after each (re)start whose records are marked steady=false.
_C.LOG.WARMUP_STEPS = 10
# tqdm progress bar on the main process.
_C.LOG.PROGRESS = True
_C.LOG.WANDB = CN()
# online | offline | disabled.
_C.LOG.WANDB.MODE = "offline"
_C.LOG.WANDB.PROJECT = "scaling-harness"
_C.LOG.WANDB.ENTITY = ""
# Empty uses SWEEP, or the run name when there is no sweep.
_C.LOG.WANDB.GROUP = ""
_C.LOG.WANDB.TAGS = []
# Seconds wandb.init may take before W&B is given up for this run.
_C.LOG.WANDB.INIT_TIMEOUT = 90

_C.CHECKPOINT = CN()
# Write checkpoints/last.pt every N epochs (and at the end, and on preemption); 0: only those.
_C.CHECKPOINT.EVERY_EPOCHS = 1
# Also write checkpoints/last.pt every N optimizer steps; 0 disables.
_C.CHECKPOINT.EVERY_N_STEPS = 0

# torch.profiler around chosen training steps (harness.profiling; `harness profile` sets ENABLED).
# A cycle skips WAIT steps, warms up WARMUP steps and records ACTIVE steps (counted in optimizer
# steps from the start or resume). Each rank writes <run dir>/profile/trace-rank<r>-cycle<c>.json;
# rank 0 writes profile/summary.md. Profiled steps run slower: their time/* figures include the
# profiler's overhead.
_C.PROFILE = CN()
_C.PROFILE.ENABLED = False
# Steps skipped before each cycle.
_C.PROFILE.WAIT = 1
# Steps profiled but discarded before each cycle's recording (the profiler's own warm-up).
_C.PROFILE.WARMUP = 1
# Steps recorded per cycle (one trace file per rank and cycle).
_C.PROFILE.ACTIVE = 3
# Number of cycles; 0 repeats them until training ends.
_C.PROFILE.REPEAT = 1
# Record operator input shapes (larger traces).
_C.PROFILE.RECORD_SHAPES = False
# Record tensor allocations (the by-memory table of summary.md needs it).
_C.PROFILE.PROFILE_MEMORY = False
# Record Python call stacks (much larger traces, more overhead).
_C.PROFILE.WITH_STACK = False

# Fault injection, for tests of preemption, crash and NaN handling.
_C.FAULT = CN()
# Behave as if preempted once this global step has completed (-1 = never).
_C.FAULT.PREEMPT_AT_STEP = -1
# Raise an error at this global step (-1 = never).
_C.FAULT.CRASH_AT_STEP = -1
# Replace the loss by NaN at this global step (-1 = never).
_C.FAULT.NAN_AT_STEP = -1
# Send this process SIGTERM (a preemption) during the validation of this epoch (-1 = never).
_C.FAULT.PREEMPT_IN_VAL_AT_EPOCH = -1
# Send this process SIGTERM while the checkpoint of this global step is written (-1 = never).
_C.FAULT.PREEMPT_IN_CHECKPOINT_AT_STEP = -1
# SIGKILL this process halfway through writing the checkpoint of this global step, once (-1 = never).
_C.FAULT.KILL_IN_CHECKPOINT_AT_STEP = -1

# What a run does: train, or commbench (`harness commbench` at the run's world, e.g. a sweep over
# DIST.NODES x DIST.GPUS on Slurm; writes <run dir>/commbench.json; see docs/commbench.md).
_C.JOB = CN()
_C.JOB.KIND = "train"
# commbench only: the command's flags, e.g. ["--max-bytes", "64M", "--ops", "all_reduce"].
# bench-model too: its flags, e.g. ["--runtimes", "eager,onnxruntime"]. eval validates
# TEST.MODEL_FILE without training (docs/models.md).
_C.JOB.ARGS = []

STRATEGIES = ("single", "dp", "ddp")
OPTIMIZERS = ("sgd", "sgd_nesterov", "adam", "adamw", "adagrad", "adadelta", "rmsprop")
CHOICES = {
    "DIST.STRATEGY": STRATEGIES,
    "DIST.BACKEND": ("auto", "nccl", "gloo"),
    "TRAIN.OPTIMIZER": OPTIMIZERS,
    "TRAIN.LR_SCALING": ("none", "linear", "sqrt"),
    "TRAIN.SCHEDULER": ("multistep", "cosine", "none"),
    "TRAIN.AMP": ("none", "fp16", "bf16"),
    "TRAIN.NAN_POLICY": ("stop", "skip"),
    "DATA.ON_BAD_SAMPLE": ("error", "skip"),
    "LOG.WANDB.MODE": ("online", "offline", "disabled"),
    "JOB.KIND": ("train", "commbench", "eval", "bench-model"),
}
