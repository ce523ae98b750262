"""SAOL under mixed precision: float32 softmaxes and losses, finite
values, outputs close to float32."""
from __future__ import annotations

import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import AmpOptimWrapper
from mmengine.registry import DefaultScope
from mmpretrain.registry import DATASETS, MODELS

from mmsaol.apis.export_gapfc import gapfc_state_dict, stock_model_config
from mmsaol.compat.amp import CPUAmpOptimWrapper

DEMO = 'configs/saol_demo.py'
#: (device, dtype, tolerance): max abs difference of the output
#: probabilities to float32, and absolute tolerance of the losses (measured
#: on the demo: bf16 1.4e-3, fp16 1.2e-4).
CASES = [
    pytest.param('cpu', torch.bfloat16, 1e-2, id='cpu-bf16'),
    pytest.param('cpu', torch.float16, 2e-3, id='cpu-fp16'),
    pytest.param('cuda', torch.float16, 2e-3, id='cuda-fp16',
                 marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                          reason='needs CUDA')),
    pytest.param('cuda', torch.bfloat16, 1e-2, id='cuda-bf16',
                 marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                          reason='needs CUDA')),
]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _demo_model(device: str, **head):
    cfg = Config.fromfile(DEMO)
    model_cfg = copy.deepcopy(cfg.model.to_dict())
    model_cfg['data_preprocessor'] = cfg.data_preprocessor.to_dict()
    model_cfg['head'].update(head)
    # CutMix on every batch (the demo may mix only some).
    model_cfg['train_cfg'] = dict(augments=dict(type='GeometryCutMix',
                                                alpha=1.0))
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    with torch.no_grad():
        # A confident, non-uniform output, so that precision shows.
        model.head.spatial_cls.weight.mul_(20)
        torch.nn.init.normal_(model.head.attention[-1].weight, std=0.5)
    return model.to(device)


def _batch(count: int = 8, offset: int = 0) -> dict:
    dataset = DATASETS.build(dict(
        type='DigitsCanvas', split='train', copies=1,
        indices=list(range(offset, offset + count)),
        pipeline=[dict(type='PackInputs')]))
    return pseudo_collate([dataset[i] for i in range(count)])


@pytest.mark.parametrize('device,dtype,tol', CASES)
def test_saol_output_is_float32_and_close(device, dtype, tol):
    model = _demo_model(device)
    model.eval()
    inputs = model.data_preprocessor(_batch(), False)['inputs']
    with torch.no_grad():
        reference = model(inputs).softmax(dim=1)
        assert reference.max() > 0.25  # far from uniform (0.1)
        with torch.autocast(device, dtype=dtype):
            feats = model.extract_feat(inputs)
            out = model.head.saol_outputs(feats)
            log_probs = model(inputs)
    assert feats[-1].dtype == dtype  # the backbone did run in low precision
    for name in ('log_attention', 'log_spatial', 'log_probs'):
        value = getattr(out, name)
        assert value.dtype == torch.float32, name
        assert torch.isfinite(value).all(), name
    assert log_probs.dtype == torch.float32
    ones = torch.ones(inputs.size(0), device=device)
    torch.testing.assert_close(out.log_attention.exp().sum(dim=(1, 2)), ones)
    torch.testing.assert_close(out.log_spatial.exp().sum(dim=1),
                               torch.ones_like(out.log_spatial[:, 0]))
    torch.testing.assert_close(log_probs.exp().sum(dim=1), ones)
    assert (log_probs.softmax(dim=1) - reference).abs().max() < tol


@pytest.mark.parametrize('device,dtype,tol', CASES)
def test_losses_are_float32_and_close(device, dtype, tol):
    """All SAOL losses (classification, self-supervision mode 'self',
    distillation) of a CutMix batch under autocast: float32, finite, close
    to the float32 losses of the same batch."""
    model = _demo_model(device)
    model.train()
    torch.manual_seed(1)
    data = model.data_preprocessor(_batch(), True)
    reference = model.loss(**data)
    assert reference['loss_spatial'] > 0  # a CutMix batch
    with torch.autocast(device, dtype=dtype):
        losses = model.loss(**data)
    assert set(losses) == set(reference)
    for name, value in losses.items():
        assert value.dtype == torch.float32, name
        assert torch.isfinite(value), name
        torch.testing.assert_close(value, reference[name], rtol=0.05,
                                   atol=tol, msg=name)


def test_gapfc_loss_is_computed_in_float32_on_cpu():
    model = _demo_model('cpu')
    model.train()
    data = model.data_preprocessor(_batch(), True)
    head = model.head
    with torch.autocast('cpu', dtype=torch.bfloat16):
        feats = model.extract_feat(data['inputs'])
        logits = head.gapfc_logits(head.saol_outputs(feats).last_feat)
        loss = model.loss(data['inputs'],
                          data['data_samples'])['loss_gapfc']
    target = torch.stack([s.gt_score for s in data['data_samples']])
    expected = head.gapfc_loss(logits.float(), target,
                               avg_factor=target.size(0))
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('device,dtype', [
    pytest.param('cpu', 'bfloat16', id='cpu-bf16'),
    pytest.param('cuda', 'float16', id='cuda-fp16',
                 marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                          reason='needs CUDA')),
    pytest.param('cuda', 'bfloat16', id='cuda-bf16',
                 marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                          reason='needs CUDA')),
])
def test_short_mixed_precision_run_stays_finite(device, dtype):
    """A few training steps with the optimizer wrapper ``--amp`` selects on
    that device (loss scaling on CUDA): no NaN/inf in losses or weights."""
    model = _demo_model(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    wrapper_type = AmpOptimWrapper if device == 'cuda' \
        else CPUAmpOptimWrapper
    optim_wrapper = wrapper_type(optimizer=optimizer, dtype=dtype)
    model.train()
    torch.manual_seed(2)
    for step in range(4):
        log_vars = model.train_step(_batch(8, offset=8 * step),
                                    optim_wrapper)
        for name, value in log_vars.items():
            assert torch.isfinite(value), (step, name)
    for name, param in model.named_parameters():
        assert torch.isfinite(param).all(), name


# ---------------------------------------------- same predictions, faster paths
#: Largest difference of output probabilities to float32 allowed for
#: channels-last float32: the same maths with other kernels (summation
#: order), float32 rounding of order 1e-7 per operation.
CHANNELS_LAST_TOL = 1e-5
#: bfloat16 keeps 8 mantissa bits (relative rounding 2^-9 = 0.002 per
#: operation); measured 3.7e-3 (SAOL) and 2.2e-3 (exported GAP-FC).
BF16_TOL = 1e-2


def _gapfc_export(model) -> torch.nn.Module:
    """The stock GAP-FC model that ``tools/export_gapfc.py`` writes for
    ``model`` (a SAOL demo model with its distilled branch)."""
    stock = stock_model_config(Config.fromfile(DEMO))
    state, _ = gapfc_state_dict(model.state_dict(), stock)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        exported = MODELS.build(copy.deepcopy(stock))
    exported.load_state_dict(state, strict=True)
    return exported


def _same_predictions(reference: torch.Tensor, probs: torch.Tensor,
                      tol: float) -> int:
    """Probabilities within ``tol`` of float32's, and the same top-1 class
    wherever float32's top two are more than ``2 * tol`` apart (closer
    ones may swap within the tolerance). Returns how many images had
    their class compared."""
    assert (probs.float() - reference).abs().max() <= tol
    top2 = reference.topk(2, dim=1).values
    clear = top2[:, 0] - top2[:, 1] > 2 * tol
    assert torch.equal(probs.argmax(dim=1)[clear],
                       reference.argmax(dim=1)[clear])
    return int(clear.sum())


@pytest.mark.parametrize('which', ['saol', 'exported-gapfc'])
def test_bf16_and_channels_last_give_the_same_predictions(which):
    """SAOL, and the GAP-FC model exported from it, predict the same under
    CPU bfloat16 autocast and with channels-last inputs and weights as in
    float32 (tolerances above)."""
    model = _demo_model('cpu')
    with torch.no_grad():
        torch.nn.init.normal_(model.head.gapfc.weight, std=0.5)
    # The exported model normalises alike (same data preprocessor).
    inputs = model.data_preprocessor(_batch(16), False)['inputs']
    if which == 'exported-gapfc':
        model = _gapfc_export(model)
    model.eval()
    with torch.no_grad():
        reference = model(inputs).softmax(dim=1)
        assert reference.max() > 0.25  # far from uniform (0.1)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            bf16 = model(inputs).softmax(dim=1)
        model.to(memory_format=torch.channels_last)
        last = inputs.contiguous(memory_format=torch.channels_last)
        channels_last = model(last).softmax(dim=1)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            both = model(last).softmax(dim=1)
    compared = [_same_predictions(reference, channels_last,
                                  CHANNELS_LAST_TOL),
                _same_predictions(reference, bf16, BF16_TOL),
                _same_predictions(reference, both, BF16_TOL)]
    assert min(compared) >= 8  # most of the 16 images had a clear class
