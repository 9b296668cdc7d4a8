"""Official HRNet config keys with their official defaults (``lib/config/default.py``).

Every key an official experiment YAML can contain is declared here, commented,
so that such a file merges with key and type checks. ``hrnet.config`` maps the
keys that have a harness meaning and validates the result.
"""

from __future__ import annotations

from yacs.config import CfgNode as CN

# Keys every STAGE2/3/4 block of MODEL.EXTRA must set.
STAGE_KEYS = ("NUM_MODULES", "NUM_BRANCHES", "BLOCK", "NUM_BLOCKS", "NUM_CHANNELS", "FUSE_METHOD")
STAGES = ("STAGE2", "STAGE3", "STAGE4")
# MODEL.NAME values (the keys of hrnet.model.MODELS) and MODEL.EXTRA.STAGEn.BLOCK values (the keys
# of hrnet.blocks.BLOCKS), named here so that loading and validating a config never imports torch.
MODEL_NAMES = ("pose_hrnet",)
BLOCK_NAMES = ("BASIC", "BOTTLENECK")


def _stage_schema() -> CN:
    # None marks "required": validate_pose_config names the key when a YAML
    # leaves it unset, and the typed schema lets merging catch misspelt keys.
    stage = CN(new_allowed=True)
    for key in STAGE_KEYS:
        stage[key] = None
    return stage


def add_pose_defaults(cfg: CN) -> None:
    """Add the pose keys (official HRNet defaults) to a clone of the harness defaults."""
    # ------------------------------------------------ official top-level keys
    # Official: device ids for nn.DataParallel, e.g. (0,1,2,3); ``(0)`` is the
    # int 0. None = not given. Mapped to DIST.GPUS / DIST.STRATEGY.
    cfg.GPUS = None
    # Official: DataLoader workers. Mapped to DATA.NUM_WORKERS.
    cfg.WORKERS = 4
    # Official: log every N iterations. Mapped to LOG.EVERY_N_STEPS.
    cfg.PRINT_FREQ = 20
    # Official: resume from the output dir. The harness always resumes from
    # checkpoints/last.pt of the run dir, so this is accepted and ignored.
    cfg.AUTO_RESUME = False
    # Official: pin loader memory. Mapped to DATA.PIN_MEMORY.
    cfg.PIN_MEMORY = True
    # Official: distributed rank (unused by the official training script); ignored.
    cfg.RANK = 0
    # Official: prefix joined onto DATASET.ROOT, MODEL.PRETRAINED and
    # TEST.MODEL_FILE at load time (then cleared, so a saved config reloads alike).
    cfg.DATA_DIR = ""
    # Official: TensorBoard log dir; the harness logs to the run dir and W&B, so ignored.
    cfg.LOG_DIR = ""

    cfg.CUDNN = CN()
    # torch.backends.cudnn.benchmark; see apply_cudnn_settings.
    cfg.CUDNN.BENCHMARK = True
    # torch.backends.cudnn.deterministic.
    cfg.CUDNN.DETERMINISTIC = False
    # torch.backends.cudnn.enabled.
    cfg.CUDNN.ENABLED = True

    # ------------------------------------------------------------------ MODEL
    cfg.MODEL = CN()
    # Architecture, a key of hrnet.model.MODELS.
    cfg.MODEL.NAME = "pose_hrnet"
    # Initialise as published (normal std 0.001 convs) and load MODEL.PRETRAINED.
    cfg.MODEL.INIT_WEIGHTS = True
    # ImageNet-pretrained backbone file, loaded for EXTRA.PRETRAINED_LAYERS
    # prefixes; '' trains from scratch. Relative paths resolve against the cwd.
    cfg.MODEL.PRETRAINED = ""
    # Heatmap channels (COCO: 17 keypoints).
    cfg.MODEL.NUM_JOINTS = 17
    # Official key for associative-embedding models; unused by pose_hrnet.
    cfg.MODEL.TAG_PER_JOINT = True
    # Target heatmap type; only gaussian is implemented (as in the official code).
    cfg.MODEL.TARGET_TYPE = "gaussian"
    # Network input [width, height] in pixels.
    cfg.MODEL.IMAGE_SIZE = [256, 256]
    # Heatmap [width, height]; IMAGE_SIZE / 4 for pose_hrnet.
    cfg.MODEL.HEATMAP_SIZE = [64, 64]
    # Gaussian sigma of the target heatmaps, in heatmap pixels (a float, so that
    # YAMLs may give 2 or 1.5).
    cfg.MODEL.SIGMA = 2.0
    # Architecture description (official layout). The typed entries below let
    # merging catch misspelt keys; other keys are allowed as in the official code.
    cfg.MODEL.EXTRA = CN(new_allowed=True)
    # Top-level module names loaded from MODEL.PRETRAINED; ['*'] loads all.
    cfg.MODEL.EXTRA.PRETRAINED_LAYERS = ["*"]
    # Kernel of final_layer (1 or 3).
    cfg.MODEL.EXTRA.FINAL_CONV_KERNEL = 1
    # Stem width (official: fixed 64). Extension for small test models.
    cfg.MODEL.EXTRA.STEM_INPLANES = 64
    # layer1 (official: fixed 4 BOTTLENECK blocks of 64). Extension for small
    # test models; the defaults reproduce the official shapes.
    cfg.MODEL.EXTRA.STAGE1 = CN(new_allowed=True)
    cfg.MODEL.EXTRA.STAGE1.BLOCK = "BOTTLENECK"
    cfg.MODEL.EXTRA.STAGE1.NUM_BLOCKS = [4]
    cfg.MODEL.EXTRA.STAGE1.NUM_CHANNELS = [64]
    # Multi-resolution stages: NUM_MODULES, NUM_BRANCHES, BLOCK (BASIC |
    # BOTTLENECK), NUM_BLOCKS and NUM_CHANNELS per branch, FUSE_METHOD (SUM).
    for stage in STAGES:
        cfg.MODEL.EXTRA[stage] = _stage_schema()

    # ------------------------------------------------------------------- LOSS
    cfg.LOSS = CN()
    # Online hard keypoint mining: average the loss of the TOPK hardest joints.
    cfg.LOSS.USE_OHKM = False
    cfg.LOSS.TOPK = 8
    # Weight each joint's heatmap loss by its visibility.
    cfg.LOSS.USE_TARGET_WEIGHT = True
    # Official key (per-joint weights); accepted, unused by the official COCO code.
    cfg.LOSS.USE_DIFFERENT_JOINTS_WEIGHT = False

    # ---------------------------------------------------------------- DATASET
    cfg.DATASET = CN()
    # Dataset directory (annotations/, images/); relative to the cwd.
    cfg.DATASET.ROOT = ""
    # Dataset format; coco (the synthetic set is COCO-format too).
    cfg.DATASET.DATASET = "mpii"
    # Image set names, e.g. train2017 / val2017.
    cfg.DATASET.TRAIN_SET = "train"
    cfg.DATASET.TEST_SET = "valid"
    # Image file extension (jpg, png).
    cfg.DATASET.DATA_FORMAT = "jpg"
    # Official MPII/COCO hybrid-joints option; accepted, unused.
    cfg.DATASET.HYBRID_JOINTS_TYPE = ""
    # Official: drop training samples whose keypoints fit the box poorly.
    cfg.DATASET.SELECT_DATA = False
    # Harness: train on a fixed subset of this many person crops, drawn by SEED (every epoch the
    # same crops, reshuffled), like the DataParallel study's subset; 0 uses them all.
    cfg.DATASET.SUBSET = 0
    # Random horizontal flip (with left/right joint swap) in training.
    cfg.DATASET.FLIP = True
    # Random scale in [1 - f, 1 + f] (clipped at 2 sigma).
    cfg.DATASET.SCALE_FACTOR = 0.25
    # Random rotation in degrees, +-2 sigma (applied with probability 0.4).
    cfg.DATASET.ROT_FACTOR = 30
    # Probability of a half-body crop.
    cfg.DATASET.PROB_HALF_BODY = 0.0
    # Visible joints needed before a half-body crop is considered.
    cfg.DATASET.NUM_JOINTS_HALF_BODY = 8
    # Feed RGB (True) or BGR (False, OpenCV order).
    cfg.DATASET.COLOR_RGB = False

    # ------------------------------------------------------------------ TRAIN
    t = cfg.TRAIN
    # Shared harness keys with the official defaults.
    t.OPTIMIZER = "adam"
    t.LR = 0.001
    t.LR_STEP = [90, 110]
    t.LR_FACTOR = 0.1
    t.MOMENTUM = 0.9
    # Official Adam ignores WD (it gets no weight_decay); sgd applies it.
    t.WD = 0.0001
    t.BATCH_SIZE_PER_GPU = 32
    # END_EPOCH - BEGIN_EPOCH of the official defaults.
    t.EPOCHS = 140
    # Official: sgd with Nesterov momentum; mapped to OPTIMIZER sgd_nesterov.
    t.NESTEROV = False
    # Official keys, unused by the official optimizers; accepted and ignored.
    t.GAMMA1 = 0.99
    t.GAMMA2 = 0.0
    # Official epoch range; END_EPOCH - BEGIN_EPOCH is mapped to TRAIN.EPOCHS.
    t.BEGIN_EPOCH = 0
    t.END_EPOCH = 140
    # Official resume switches; the harness resumes from the run dir, so ignored.
    t.RESUME = False
    t.CHECKPOINT = ""
    # Official: shuffle the training set. The harness sampler always shuffles.
    t.SHUFFLE = True

    # ------------------------------------------------------------------- TEST
    cfg.TEST = CN()
    # Per-device validation batch; mapped to EVAL.BATCH_SIZE_PER_GPU.
    cfg.TEST.BATCH_SIZE_PER_GPU = 32
    # Average with the flipped image's heatmaps (joint channels swapped).
    cfg.TEST.FLIP_TEST = False
    # Quarter-pixel shift of the argmax toward the higher neighbour.
    cfg.TEST.POST_PROCESS = False
    # Shift the flipped heatmap right by one pixel before averaging.
    cfg.TEST.SHIFT_HEATMAP = False
    # Evaluate on ground-truth person boxes (True) or COCO_BBOX_FILE detections.
    cfg.TEST.USE_GT_BBOX = False
    # Detections scoring below this are dropped.
    cfg.TEST.IMAGE_THRE = 0.1
    # Official key (box NMS threshold); accepted, unused by the COCO evaluation.
    cfg.TEST.NMS_THRE = 0.6
    # Soft OKS-NMS instead of hard OKS-NMS.
    cfg.TEST.SOFT_NMS = False
    # OKS-NMS threshold over the predicted poses of one image.
    cfg.TEST.OKS_THRE = 0.5
    # Joints with a heatmap maximum above this count toward the pose score.
    cfg.TEST.IN_VIS_THRE = 0.0
    # Person detections (COCO results json) used when USE_GT_BBOX is False.
    cfg.TEST.COCO_BBOX_FILE = ""
    # Official key (box score threshold); accepted.
    cfg.TEST.BBOX_THRE = 1.0
    # A full model checkpoint (e.g. official pose_hrnet_w32_256x192.pth), loaded strict.
    cfg.TEST.MODEL_FILE = ""

    # ------------------------------------------------------------------ DEBUG
    cfg.DEBUG = CN()
    # Official debug switches (save batch images / heatmaps); accepted.
    cfg.DEBUG.DEBUG = False
    cfg.DEBUG.SAVE_BATCH_IMAGES_GT = False
    cfg.DEBUG.SAVE_BATCH_IMAGES_PRED = False
    cfg.DEBUG.SAVE_HEATMAPS_GT = False
    cfg.DEBUG.SAVE_HEATMAPS_PRED = False

    # ---------------------------------- harness keys with official defaults
    cfg.DATA.NUM_WORKERS = cfg.WORKERS
    cfg.DATA.PIN_MEMORY = cfg.PIN_MEMORY
    cfg.LOG.EVERY_N_STEPS = cfg.PRINT_FREQ
    cfg.EVAL.BATCH_SIZE_PER_GPU = cfg.TEST.BATCH_SIZE_PER_GPU
