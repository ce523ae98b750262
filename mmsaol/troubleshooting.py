"""What goes wrong most often, as data: the docs page "Troubleshooting".

Every :class:`Problem` quotes the error text the user sees; the bad-input
tests (``tests/test_bad_inputs.py``) check that each quoted text is really
what mmsaol and its stack print. The documentation renders its
"Troubleshooting" page from :data:`PROBLEMS` (:func:`render_table`) when it
is built, so the page and the tests read the same rows. Print the section
with ``python -m mmsaol.troubleshooting``; :func:`match` finds the row of a
message.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Optional, Tuple

__all__ = ['PROBLEMS', 'Problem', 'match', 'problem', 'render_markdown',
           'render_table']

HEADING = '## Troubleshooting'
INTRO = (
    'Each message below is quoted as mmsaol (or mmpretrain / torch) prints '
    'it, and each is produced by a test (`tests/test_bad_inputs.py`). '
    'Inputs that work as they are: batch size 1, non-square images, '
    'feature maps down to 1x1 (then the attention is 1 everywhere and SAOL '
    'is a per-location classifier), and grayscale images with the '
    "configs' 3-value `data_preprocessor.mean`/`std` (the single channel "
    'is broadcast to three equal ones, exactly as if it had been converted '
    'to RGB).')


@dataclass(frozen=True)
class Problem:
    """One row of the troubleshooting table.

    Attributes:
        key (str): Stable name the tests refer to.
        messages (Tuple[str, ...]): Literal excerpts of the error or warning
            messages, each one what a user would search for.
        cause (str): Why it happens (markdown).
        fix (str): What to change (markdown).
    """

    key: str
    messages: Tuple[str, ...]
    cause: str
    fix: str


PROBLEMS: Tuple[Problem, ...] = (
    Problem(
        'in_channels',
        ('does not match the channels of the stages selected by '
         'backbone.out_indices', ),
        '`head.in_channels` lists other channel counts than the backbone '
        'stages in `backbone.out_indices` produce.',
        'Set `head.in_channels` to the tuple the message prints, one entry '
        'per index in `backbone.out_indices` (ResNet-50 stages 2-4: '
        '`(512, 1024, 2048)`).'),
    Problem(
        'out_indices',
        ('Make backbone.out_indices and head.in_channels name the same '
         'stages', ),
        '`backbone.out_indices` is missing (most backbones then return only '
        'the last stage) or lists another number of stages than '
        '`head.in_channels`.',
        'Set `backbone.out_indices` to the stages SAOL fuses, e.g. '
        '`(1, 2, 3)`, and `head.in_channels` to their channels.'),
    Problem(
        'unknown_option',
        ('has no option', ),
        'A key of a component\'s config dict is misspelt or belongs to '
        'another component (e.g. `head.self_supervison`).',
        'Use the option the message suggests (`did you mean ...`); it '
        'lists every option the component accepts.'),
    Problem(
        'work_dir_unwritable',
        ('Cannot write to the work dir', ),
        'The work dir (or a folder above it) is read-only or belongs to '
        'another user.',
        'Make it writable, or pass `--work-dir DIR` with a folder you can '
        'write to.'),
    Problem(
        'work_dir_full',
        ('No space left on device while writing', ),
        'The device of the work dir is full (or over quota) while a '
        'checkpoint or log is written.',
        'Free space or pick another `--work-dir`; checkpoints already '
        'written are complete, so `--resume` continues from the last one.'),
    Problem(
        'binary_last_checkpoint',
        ('holds binary data, not the path of a checkpoint', ),
        '`work_dir/last_checkpoint` (the pointer `--resume` reads) is '
        'damaged. With `AtomicCheckpointHook` the run falls back to the '
        'newest complete checkpoint with a warning; this error means none '
        'is left (or the stock `CheckpointHook` is used).',
        '`--resume PATH` with a checkpoint you have, or delete '
        '`last_checkpoint` to train from scratch.'),
    Problem(
        'out_indices_range',
        ('names a stage the backbone does not have', ),
        'An index in `backbone.out_indices` is not below the number of '
        'stages (indices count from 0).',
        'Use indices `0 .. num_stages - 1`, e.g. `(1, 2, 3)` for a '
        '4-stage ResNet.'),
    Problem(
        'num_classes',
        ('to the number of classes of the data set', ),
        '`model.head.num_classes` and `data_preprocessor.num_classes` '
        'differ, or are smaller than the number of classes of the data '
        'set (a label is out of range).',
        "Set both to `len(dataset.metainfo['classes'])`."),
    Problem(
        'neck',
        ('Set model.neck=None', ),
        'A pooling neck (`GlobalAveragePooling` of the GAP-FC configs) '
        'removes the spatial grid SAOL works on.',
        '`model.neck=None`, and a backbone that outputs feature maps '
        "(`out_type='featmap'` for ViT-style backbones)."),
    Problem(
        'no_geometry_cutmix',
        ('has no GeometryCutMix', ),
        '`head.self_supervision` needs to know where CutMix pasted; only '
        '`GeometryCutMix` records it (plain `CutMix`, `Mixup` alone or no '
        'batch augment never do).',
        "`model.train_cfg=dict(augments=dict(type='GeometryCutMix', "
        "alpha=1.0))`, or `head.self_supervision=None`."),
    Problem(
        'preprocessor',
        ('which only SAOLDataPreprocessor carries', ),
        '`data_preprocessor.type` is `ClsDataPreprocessor`, which drops the '
        'CutMix geometry.',
        'Remove `data_preprocessor.type` (SAOLClassifier defaults to '
        "`SAOLDataPreprocessor`) or set it to `'SAOLDataPreprocessor'`."),
    Problem(
        'image_classifier',
        ("needs model.type='SAOLClassifier'", ),
        "`model.type='ImageClassifier'` neither carries the CutMix "
        'geometry nor computes the un-mixed maps, so the location losses '
        "would stay 0 (or `label_mix='attention'` would stay area-mixed).",
        "`model.type='SAOLClassifier'` (same arguments, same checkpoints)."),
    Problem(
        'self_supervision_target',
        ('head.self_supervision.target must be one of', ),
        'Unknown self-supervision target.',
        "`'self'` (self-annotated maps) or `'label'` (label maps, no extra "
        'forward).'),
    Problem(
        'gapfc_without_distillation',
        ('needs the GAP-FC branch: set head.distillation=dict()', ),
        "`test_output='gapfc'` (`tools/test.py --head gapfc`) asks for the "
        'self-distilled GAP-FC branch, which exists only with '
        '`head.distillation`.',
        'Train with `head.distillation=dict()`, or evaluate with '
        '`--head saol`.'),
    Problem(
        'cutmix_alpha',
        ('alpha must be a positive float', ),
        '`GeometryCutMix` got `alpha=0` or a string (a quoted value in '
        '`--cfg-options`).',
        '`alpha=1.0` (the Beta(alpha, alpha) mixing ratio of CutMix).'),
    Problem(
        'single_value_batch_norm',
        ('Expected more than 1 value per channel when training', ),
        'A BatchNorm layer saw one value per channel: a training batch of '
        'one image whose feature map is 1x1 (tiny inputs; also a last '
        'batch of one image).',
        'Batch size >= 2 and `train_dataloader.drop_last=True`, or larger '
        'inputs.'),
    Problem(
        'channels',
        ('to have 3 channels, but got 1 channels instead', ),
        'One-channel (grayscale) images reach a 3-channel backbone without '
        'normalisation (`data_preprocessor.mean=None`).',
        'Keep a 3-value `data_preprocessor.mean`/`std` (grayscale is then '
        "broadcast to 3 channels), load images in colour (`color_type="
        "'color'`, the default), or set `backbone.in_channels=1`."),
    Problem(
        'empty_dataset',
        ('Found 0 files in subfolders of', 'selects no image'),
        'The data folder is empty or wrong, or `indices` selects nothing.',
        'Check `data_root` / `data_prefix` (one sub-folder per class for '
        '`CustomDataset`) and `indices`.'),
    Problem(
        'empty_class_folder',
        ('holds no image file', ),
        'A class sub-folder of a `CustomDataset` folder has no image with a '
        'supported extension. It still counts as a class: its label index '
        'and `num_classes` include it, and no sample has it.',
        'Delete the folder (and lower `num_classes`), or add its images.'),
    Problem(
        'unreadable_image',
        ('Cannot read image', ),
        'An image file is empty (0 bytes) or not an image (an incomplete '
        "copy or download). mmsaol's `LoadImageFromFile` (mmcv's, "
        'registered in its place) names the file; mmcv raised `cv2.error` '
        '(`imdecode_`) or `failed to load image` without saying why.',
        'Replace or delete the file the message names.'),
    Problem(
        'huge_image',
        ('pixels OpenCV decodes', ),
        "An image's header claims more than OpenCV's limit of 2^30 pixels "
        '(e.g. 50000x50000): a damaged or crafted header, or a huge image.',
        'Replace or shrink the image; for a genuine one raise the limit '
        'with the environment variable `OPENCV_IO_MAX_IMAGE_PIXELS`.'),
    Problem(
        'corrupt_checkpoint',
        ('the file is truncated, damaged or not a checkpoint', ),
        'The checkpoint is incomplete (killed while saving with the stock '
        '`CheckpointHook`, an incomplete copy or download) or damaged (a '
        'record fails its CRC-32 check: bytes changed on disk or in '
        'transfer), or holds data torch, numpy and mmengine never write.',
        'Use another checkpoint. With `AtomicCheckpointHook` (the shipped '
        'configs) a kill never leaves a partial checkpoint.'),
    Problem(
        'oversized_checkpoint',
        ('its records declare', ),
        "The checkpoint's zip records declare more data than "
        '`MMSAOL_CHECKPOINT_MAX_EXPANSION` (default 16) times the file '
        'size: a deflate bomb, or a re-zipped checkpoint of mostly zeros '
        '(torch itself never compresses). Nothing was inflated.',
        'If you trust the file, set `MMSAOL_CHECKPOINT_MAX_EXPANSION` to '
        'the number the message gives.'),
    Problem(
        'resume_without_checkpoint',
        ('no other complete checkpoint of this run was found', ),
        '`--resume` found `work_dir/last_checkpoint`, but the file it names '
        'is missing or damaged and no complete checkpoint is left. (When '
        'one is left, the run resumes from the newest with a warning.)',
        '`--resume PATH` with a checkpoint you have, or delete '
        '`last_checkpoint` to train from scratch.'),
    Problem(
        'unsafe_checkpoint',
        ('which is not allowed. The file was NOT executed', ),
        'The checkpoint pickles objects other than tensors and the types '
        'mmengine checkpoints contain (among numpy data only numeric '
        'arrays, scalars and dtypes): possibly malicious, or made by '
        'another tool.',
        'Do not load files you do not trust. If you trust it, re-save its '
        '`state_dict` as plain tensors in the tool that made it (the '
        'message shows how).'),
    Problem(
        'checkpoint_mismatch',
        ('The checkpoint does not fit this model',
         'The checkpoint fits the model only in part'),
        'The checkpoint was trained with another config (backbone, width, '
        'head or number of classes). Without `CheckpointMatchHook` mmengine '
        'only logs the unused keys and goes on with random weights.',
        "Use the config it was trained with (stored in it as "
        "`meta['cfg']`). Fine-tuning with a new head from `load_from` gives "
        'a warning, not this error.'),
    Problem(
        'checkpoint_values',
        ('does not hold usable values', ),
        'A `state_dict` entry fits the model by name and shape but is a '
        'numpy array, on the meta device, of another dtype class (int8 '
        'codes for float weights) or NaN/inf (`UnusableWeightsError`: '
        '`<param> holds N of M values that are NaN or inf` when the '
        'training diverged or the file was altered); mmengine would copy '
        'it as it is and the model would predict at chance. Every tool '
        'and API that builds a model from a file checks this.',
        'For NaN/inf, use an earlier checkpoint of the run. Otherwise '
        're-save the trained model with `torch.save({"state_dict": '
        'model.state_dict()}, path)`, or use another checkpoint.'),
    Problem(
        'non_finite_loss',
        ('Non-finite loss at', 'Refused to save a checkpoint after '
         'iteration'),
        'Training diverged (learning rate too high for the batch size, no '
        'warm-up, a bad loss weight or bad input); `NonFiniteLossHook` '
        'stopped it before a poisoned checkpoint was written.',
        'Lower `optim_wrapper.optimizer.lr`, add '
        '`optim_wrapper.clip_grad=dict(max_norm=...)`, then `--resume` '
        'from the last complete checkpoint the message names.'),
    Problem(
        'export_without_gapfc',
        ('The checkpoint has no trained GAP-FC branch', ),
        '`tools/export_gapfc.py` got a checkpoint trained without '
        '`head.distillation`.',
        'Export a checkpoint trained with `head.distillation=dict()`.'),
    Problem(
        'launcher',
        ('argument --launcher: invalid choice',
         'needs the environment variables'),
        'An unknown `--launcher`, or `--launcher pytorch|slurm` in a process '
        'not started by torchrun / srun (no `RANK`, `WORLD_SIZE`, ...).',
        '`bash tools/dist_train.sh CONFIG NPROC` (torchrun) or '
        '`tools/slurm_train.sh`; '
        '`--launcher none` for a single process.'),
)


def problem(key: str) -> Problem:
    """The row named ``key``."""
    for row in PROBLEMS:
        if row.key == key:
            return row
    raise KeyError(f'No troubleshooting entry {key!r}; known: '
                   f'{[row.key for row in PROBLEMS]}.')


def match(message: str) -> Optional[Problem]:
    """The row whose quoted text occurs in ``message``, or None.

    Args:
        message (str): An error or warning message as printed.

    Returns:
        Problem, optional: The first row of :data:`PROBLEMS` one of whose
        ``messages`` is part of ``message``.
    """
    for row in PROBLEMS:
        if any(text in message for text in row.messages):
            return row
    return None


def _cell(text: str) -> str:
    return text.replace('|', '\\|')


def render_table() -> str:
    """The table of :data:`PROBLEMS` (message, cause, fix) in Markdown."""
    lines = ['| Message | Cause | Fix |', '| --- | --- | --- |']
    for row in PROBLEMS:
        quoted = ' / '.join(f'`{m}`' for m in row.messages)
        lines.append(f'| {_cell(quoted)} | {_cell(row.cause)} | '
                     f'{_cell(row.fix)} |')
    return '\n'.join(lines) + '\n'


def render_markdown() -> str:
    """The "Troubleshooting" section: heading, introduction and table."""
    return '\n'.join([HEADING, '', textwrap.fill(INTRO, width=79), '',
                      render_table()])


if __name__ == '__main__':
    print(render_markdown(), end='')
