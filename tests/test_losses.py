import pytest
import torch
import torch.nn.functional as F

from edge_fer.models.losses import CompactSoftmaxCrossEntropy, symmetric_kl


@pytest.mark.parametrize("seed", range(5))
def test_cs_ce_is_at_least_ce(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(16, 7, generator=g) * 3
    target = torch.randint(0, 7, (16,), generator=g)
    loss = CompactSoftmaxCrossEntropy(0.5)
    assert loss(logits, target) >= F.cross_entropy(logits, target)
    assert loss.compact_term(logits, target) > 0


def test_zero_extra_term_when_non_target_predictions_of_a_class_agree():
    # Each class: one shared pattern over the non-target classes, target logits that differ
    # from sample to sample (the non-target distribution does not depend on them), and
    # classes far apart, so the separation hinge is inactive too.
    g = torch.Generator().manual_seed(0)
    k = 4
    rows, target = [], []
    for cls in range(k):
        pattern = torch.randn(k, generator=g)
        for boost in (8.0, 10.0, 12.0):
            row = pattern.clone()
            row[cls] = boost
            rows.append(row)
            target.append(cls)
    logits, target = torch.stack(rows), torch.tensor(target)
    loss = CompactSoftmaxCrossEntropy(1.0, margin=1.0)
    assert loss.compact_term(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(logits, target).item() == pytest.approx(F.cross_entropy(logits, target).item(), abs=1e-6)
    # Perturb one sample's non-target logits: its class is no longer compact.
    logits[1, 2] += 2.0
    assert loss.compact_term(logits, target).item() > 1e-3


def test_separation_hinge_pushes_identical_predictions_of_different_classes():
    logits = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    loss = CompactSoftmaxCrossEntropy(1.0, separation_weight=0.5, margin=2.0)
    # No same-class pair; SKL between the two identical predictions is 0 -> hinge = margin.
    assert loss.compact_term(logits, torch.tensor([0, 1])).item() == pytest.approx(0.5 * 2.0)


def test_weight_zero_is_cross_entropy():
    logits, target = torch.randn(8, 7), torch.randint(0, 7, (8,))
    assert torch.equal(CompactSoftmaxCrossEntropy(0.0)(logits, target), F.cross_entropy(logits, target))


def test_gradients_are_finite_despite_masked_classes():
    logits = (torch.randn(12, 7) * 5).requires_grad_()
    target = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 5, 6, 6])
    CompactSoftmaxCrossEntropy(0.3)(logits, target).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_symmetric_kl_matches_definition():
    a = torch.log_softmax(torch.randn(5, 6), -1)
    b = torch.log_softmax(torch.randn(5, 6), -1)
    kl = lambda p, q: (p.exp() * (p - q)).sum(-1)  # noqa: E731
    assert torch.allclose(symmetric_kl(a, b), kl(a, b) + kl(b, a), atol=1e-6)
    assert torch.allclose(symmetric_kl(a, a), torch.zeros(5))
