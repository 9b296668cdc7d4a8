"""FER workload configuration: the class names, the ``MODEL``/``DATASET``/``TEST`` defaults and
their validation. Light (no torch), so that loading a config or planning a sweep does not
import the training stack."""

from __future__ import annotations

from yacs.config import CfgNode as CN

from harness.config import ConfigError

CLASS_NAMES = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
NUM_CLASSES = len(CLASS_NAMES)
# DATASET.FORMAT values.
FORMATS = ("auto", "csv", "torchvision", "folder")
# TRAIN.CLASS_WEIGHTING values.
WEIGHTINGS = ("none", "loss", "sampler")
# Layouts `harness data synth-fer --format` writes (DATASET.FORMAT reads each of them).
SYNTH_FORMATS = ("csv", "folder", "torchvision")


def add_fer_defaults(cfg: CN) -> None:
    cfg.MODEL = CN()
    # A key of efficientnet.backbones.BACKBONES (efficientnet_b0..b7, efficientnet_v2_s/m, mobilenet_v2,
    # mobilenet_v3_small/large, shufflenet_v2_x1_0, squeezenet1_1, mnasnet0_5, resnet18/50; docs/models.md)
    # or tiny_cnn (tests).
    cfg.MODEL.NAME = "efficientnet_b0"
    cfg.MODEL.NUM_CLASSES = len(CLASS_NAMES)
    # 1: grayscale stem (no 3x copy of each image).
    cfg.MODEL.IN_CHANNELS = 1
    # Local torchvision weights file (ImageNet); empty trains from scratch. Never downloaded.
    cfg.MODEL.PRETRAINED = ""
    # Dropout before the classifier.
    cfg.MODEL.DROPOUT = 0.2
    # Stochastic depth probability of the MBConv blocks.
    cfg.MODEL.STOCHASTIC_DEPTH = 0.2

    cfg.DATASET = CN()
    # fer2013.csv, its directory, a torchvision root (ROOT/fer2013/), or a folder set (train/, test/).
    cfg.DATASET.ROOT = ""
    # auto | csv | torchvision | folder.
    cfg.DATASET.FORMAT = "auto"
    # Split names: train, val (PublicTest), test (PrivateTest), or raw Usage names.
    cfg.DATASET.TRAIN_SPLIT = "train"
    cfg.DATASET.VAL_SPLIT = "val"
    # Fraction (0-1) of TRAIN_SPLIT held out as the validation set, drawn by SEED; 0 validates on
    # VAL_SPLIT instead. A key of its own (one type per key), but a number given as VAL_SPLIT
    # (`DATASET.VAL_SPLIT 0.1`) is read as this fraction (efficientnet.workload.rewrite_key).
    cfg.DATASET.VAL_FRACTION = 0.0
    # Train on a fixed subset of this many training samples, drawn by SEED (every epoch the same
    # samples, reshuffled); 0 uses the whole training set. Validation is never subset.
    cfg.DATASET.SUBSET = 0
    # Side length fed to the model (48 = native FER2013).
    cfg.DATASET.IMAGE_SIZE = 48
    # Grayscale normalisation, applied on the device.
    cfg.DATASET.MEAN = 0.5
    cfg.DATASET.STD = 0.25
    cfg.DATASET.AUG = CN()
    # Random crop after zero padding by this many pixels.
    cfg.DATASET.AUG.CROP_PADDING = 4
    cfg.DATASET.AUG.HFLIP = True
    # Rotation range in degrees (+-).
    cfg.DATASET.AUG.ROTATION = 10.0
    # Zoom range [low, high].
    cfg.DATASET.AUG.SCALE = [0.9, 1.1]
    # Probability of random erasing.
    cfg.DATASET.AUG.RANDOM_ERASING = 0.0

    # none | loss (inverse-frequency class weights) | sampler (class-balanced draws).
    cfg.TRAIN.CLASS_WEIGHTING = "none"
    cfg.TRAIN.LABEL_SMOOTHING = 0.0

    cfg.TEST = CN()
    # Reported in addition to accuracy/macro-F1: per-class recall and the confusion matrix.
    cfg.TEST.PER_CLASS = True
    # Checkpoint evaluated by `harness eval` / `harness predict` (last.pt or a bare state_dict).
    cfg.TEST.MODEL_FILE = ""


def validate_fer_config(cfg: CN) -> None:
    """Raise ConfigError naming the key on a bad FER value."""
    if cfg.DATASET.FORMAT not in FORMATS:
        raise ConfigError(f"DATASET.FORMAT is {cfg.DATASET.FORMAT!r}; choose one of {', '.join(FORMATS)}")
    if cfg.TRAIN.CLASS_WEIGHTING not in WEIGHTINGS:
        raise ConfigError(
            f"TRAIN.CLASS_WEIGHTING is {cfg.TRAIN.CLASS_WEIGHTING!r}; choose one of {', '.join(WEIGHTINGS)}"
        )
    if cfg.MODEL.NUM_CLASSES != len(CLASS_NAMES):
        raise ConfigError(
            f"MODEL.NUM_CLASSES must be {len(CLASS_NAMES)} for FER, got {cfg.MODEL.NUM_CLASSES}"
        )
    scale = list(cfg.DATASET.AUG.SCALE)
    if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
        raise ConfigError(f"DATASET.AUG.SCALE must be [low, high] with 0 < low <= high, got {scale}")
    if cfg.DATASET.STD <= 0:
        raise ConfigError(f"DATASET.STD must be > 0, got {cfg.DATASET.STD}")
    if not 0.0 <= cfg.DATASET.VAL_FRACTION < 1.0:
        raise ConfigError(f"DATASET.VAL_FRACTION must be in [0, 1), got {cfg.DATASET.VAL_FRACTION}")
    if cfg.DATASET.SUBSET < 0:
        raise ConfigError(f"DATASET.SUBSET must be >= 0 (0 = all), got {cfg.DATASET.SUBSET}")
