from setuptools import find_packages, setup

setup(
    name="scaling-harness",
    version="0.1.0",
    description="Distributed-training research harness: DP vs DDP scaling sweeps on Slurm or local GPUs",
    python_requires=">=3.10",
    packages=find_packages(
        include=[
            "harness",
            "harness.*",
            "efficientnet",
            "efficientnet.*",
            "hrnet",
            "hrnet.*",
            "analysis",
            "analysis.*",
        ]
    ),
    install_requires=[
        # Exact pins: an open range pulls a different multi-GB CUDA build.
        "torch==2.14.1",
        "torchvision==0.29.1",
        "submitit==1.5.4",
        "wandb>=0.31,<0.32",
        "pycocotools==2.0.11",
        "yacs==0.1.8",
        "pyyaml",
        "numpy",
        "scipy",
        "pandas",
        "matplotlib",
        "pillow",
        # The official HRNet crop (cv2.warpAffine); headless: no GUI libraries needed.
        "opencv-python-headless>=4.8,<6",
        "tqdm",
        "psutil",
        # harness bench-model: ONNX export and ONNX Runtime / OpenVINO timing (none pulls torch).
        "onnx==1.23.2",
        "onnxscript==0.7.2",
        "onnxruntime==1.31.1",
        "openvino==2026.4.1",
    ],
    extras_require={
        "dev": ["pytest", "pytest-xdist", "ruff==0.17.6", "mypy==2.4.1", "pre-commit"],
        # Holistic Trace Analysis for profile/summary.md (optional; pulls jupyterlab, not torch).
        "profile": ["holistictraceanalysis==0.5.0"],
    },
    entry_points={"console_scripts": ["harness=harness.cli:main"]},
)
