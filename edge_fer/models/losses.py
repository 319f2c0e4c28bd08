"""Compact softmax cross-entropy (CS-CE), the STT paper's training loss.

The paper describes CS-CE as cross-entropy plus a term built on the symmetric KL
divergence of the *non-target* predictions that makes same-class samples compact and
pushes classes apart; it gives no code. This is the formula implemented here.

For a batch of logits z_i with labels y_i over K classes, let

- p_i = softmax(z_i), the full prediction;
- q_i = softmax of z_i over the K-1 classes other than y_i, the non-target prediction
  (how sample i spreads its remaining belief: its "dark knowledge");
- SKL(a, b) = KL(a || b) + KL(b || a) = sum_k (a_k - b_k) (log a_k - log b_k).

Then

    CS-CE = CE + lambda * ( mean over pairs i<j with y_i = y_j of SKL(q_i, q_j)
                          + mu * mean over pairs i<j with y_i != y_j of max(0, m - SKL(p_i, p_j)) )

The first term pulls samples of one class together: it is zero exactly when all samples of
each class agree on their non-target predictions. The second is a hinge that pushes
samples of different classes apart until their predictions differ by at least ``margin``
(symmetric KL, nats); it is zero for classes already that far apart. Both are >= 0, so
CS-CE >= CE. A term whose pairs do not exist in a batch counts as zero.

Defaults: lambda = 0.1, mu = 1.0, m = 1.0. lambda = 0 gives plain cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["symmetric_kl", "CompactSoftmaxCrossEntropy", "DistillationLoss", "FeatureDistillation", "adjust_to_labels"]


def symmetric_kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """SKL between distributions given as log-probabilities, over the last axis.

    Entries where both are -inf (a class excluded from both) contribute zero.
    """
    diff_p = log_a.exp() - log_b.exp()
    diff_log = torch.where(torch.isfinite(log_a) & torch.isfinite(log_b), log_a - log_b, torch.zeros_like(log_a))
    return (diff_p * diff_log).sum(dim=-1)


class CompactSoftmaxCrossEntropy(nn.Module):
    """CS-CE loss; the formula is in the module docstring.

    Args:
        weight: lambda, the weight of the compactness term (0 gives cross-entropy).
        separation_weight: mu, the weight of the inter-class hinge inside that term.
        margin: m, the symmetric-KL distance beyond which classes are not pushed further.
        label_smoothing: passed to the cross-entropy term.
    """

    def __init__(
        self, weight: float = 0.1, *, separation_weight: float = 1.0, margin: float = 1.0, label_smoothing: float = 0.0
    ) -> None:
        super().__init__()
        if weight < 0 or separation_weight < 0 or margin < 0:
            raise ValueError("CS-CE weight, separation_weight and margin must be >= 0")
        self.weight = weight
        self.separation_weight = separation_weight
        self.margin = margin
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)
        if self.weight == 0:
            return ce
        return ce + self.weight * self.compact_term(logits, target)

    def compact_term(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The bracketed term of the formula, (B, K) logits and (B,) labels -> scalar."""
        b = logits.shape[0]
        same = target[:, None] == target[None, :]
        upper = torch.triu(torch.ones(b, b, dtype=torch.bool, device=logits.device), diagonal=1)
        zero = logits.new_zeros(())

        # Non-target predictions: mask the sample's own class, renormalise over the rest.
        own = F.one_hot(target, logits.shape[1]).bool()
        log_q = F.log_softmax(logits.masked_fill(own, float("-inf")), dim=-1)  # (B, K), -inf at y_i
        pairs_same = same & upper
        if pairs_same.any():
            i, j = pairs_same.nonzero(as_tuple=True)
            compact = symmetric_kl(log_q[i], log_q[j]).mean()
        else:
            compact = zero

        pairs_diff = ~same & upper
        if self.separation_weight > 0 and pairs_diff.any():
            i, j = pairs_diff.nonzero(as_tuple=True)
            log_p = F.log_softmax(logits, dim=-1)
            separation = F.relu(self.margin - symmetric_kl(log_p[i], log_p[j])).mean()
        else:
            separation = zero
        return compact + self.separation_weight * separation


class DistillationLoss(nn.Module):
    """``base`` on the labels, mixed with cross-entropy to a teacher's class probabilities.

    loss = (1 - weight) * base(logits, labels) + weight * CE(softmax(logits), teacher)
           [+ features.weight * features(teacher feature maps)]

    With ``adjust`` the teacher's probabilities are first corrected where its top class is not
    the label: the label's probability and the top one trade places ("knowledge adjustment",
    Wen et al. 2019, arXiv:1911.07471). The label then always leads the target while the
    teacher's view of how alike the other classes look is kept - without it a class the teacher
    reads as another (our rendered disgust as anger) is learnt as that other class. Rows whose
    label is in ``teacher_leads`` keep the teacher's probabilities as they are: a synthetic
    neutral clip is the real photo unmodified, so there the teacher's reading of a real face is
    better evidence than the assumed label.

    With ``features`` (a ``FeatureDistillation`` on the model's trunk) batches that carry the
    teacher's feature maps as well add its term. Batches without teacher probabilities
    (validation, QAT) get ``base`` alone.
    """

    def __init__(
        self,
        base: nn.Module,
        weight: float,
        *,
        adjust: bool = False,
        teacher_leads: tuple[int, ...] = (),
        features: FeatureDistillation | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"the teacher's weight must be in [0, 1], got {weight}")
        self.base, self.weight, self.adjust, self.features = base, weight, adjust, features
        self.teacher_leads = tuple(teacher_leads)

    def forward(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        teacher: torch.Tensor | None = None,
        teacher_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        loss = self.base(logits, target)
        if teacher is None:
            return loss
        if self.weight > 0:
            if self.adjust:
                adjusted = adjust_to_labels(teacher, target)
                if self.teacher_leads:
                    as_read = torch.isin(target, torch.tensor(self.teacher_leads, device=target.device))
                    adjusted = torch.where(as_read[:, None], teacher, adjusted)
                teacher = adjusted
            soft = -(teacher * F.log_softmax(logits, dim=1)).sum(1).mean()
            loss = (1 - self.weight) * loss + self.weight * soft
        if self.features is not None and teacher_features is not None:
            loss = loss + self.features.weight * self.features(teacher_features)
        return loss


class FeatureDistillation(nn.Module):
    """Cosine distance between a trunk's feature map and a teacher's, location by location.

    A 1x1 convolution (learnt with the model, used only in training) takes the trunk's
    channels to the teacher's; both maps are L2-normalised over channels at each location and
    ``mean(1 - cos)`` is the loss (0 when every location points the teacher's way). The
    trunk's map is average-pooled to the teacher's size where they differ. The trunk's output
    is taken by a forward hook in the model's own forward, only while gradients are on, so
    the model and its checkpoint stay as they are. Hint learning as in FitNets (Romero et al.
    2015, arXiv:1412.6550) with a cosine rather than an L2 distance, so the teacher's
    activation scale does not matter.
    """

    def __init__(self, trunk: nn.Module, trunk_channels: int, teacher_channels: int, weight: float) -> None:
        super().__init__()
        if weight < 0:
            raise ValueError(f"the feature term's weight must be >= 0, got {weight}")
        self.weight = weight
        self.project = nn.Conv2d(trunk_channels, teacher_channels, 1)
        self._trunk_output: torch.Tensor | None = None
        self._hook = trunk.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self._trunk_output = output if torch.is_grad_enabled() else None

    def forward(self, teacher_features: torch.Tensor) -> torch.Tensor:
        """``teacher_features``: (B, C_teacher, h, w), for the batch the trunk saw last."""
        student = self._trunk_output
        if student is None or len(student) != len(teacher_features):
            raise RuntimeError("FeatureDistillation: the trunk has not run on this batch with gradients on")
        if student.shape[-2:] != teacher_features.shape[-2:]:
            student = F.adaptive_avg_pool2d(student, teacher_features.shape[-2:])
        student = F.normalize(self.project(student.float()), dim=1)
        teacher = F.normalize(teacher_features.float(), dim=1)
        self._trunk_output = None
        return (1 - (student * teacher).sum(1)).mean()


def adjust_to_labels(probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Swap each row's label probability with its largest, so the label leads (ties unchanged)."""
    top = probabilities.argmax(1)
    rows = torch.arange(len(labels), device=probabilities.device)
    adjusted = probabilities.clone()
    adjusted[rows, labels] = probabilities[rows, top]
    adjusted[rows, top] = probabilities[rows, labels]
    return adjusted
