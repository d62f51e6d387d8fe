"""How faithfully a reduced-precision model reproduces its FP32 original, and the gate that acts on it.

Agreement, not accuracy: on unlabelled held-out photos the FP32 model's answer is the reference. ``confident`` counts
only samples where FP32's top-1 probability exceeds 0.5 -- there a disagreement is a real error, not a coin toss
between near-equal classes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from edgeconv.errors import InvalidArgumentError, QuantizationError

CONFIDENT_PROBABILITY = 0.5
# Default gate, from bench/results/int8.md: mobilenet_v2 (ImageNet weights) on 1000 held-out random crops reaches
# 86.4% top-1 agreement (99.7% on confident crops) with edgeconv's defaults (tensorrt form: 81.1% / 98.8%), where
# plain ORT PTQ falls to 54% (82%).
# 0.65 passes the former and refuses the latter. Random crops include many ambiguous views (only a third have FP32
# top-1 probability > 0.5), so overall agreement sits well below confident agreement for every INT8 scheme.
DEFAULT_MIN_AGREEMENT = 0.65


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio 20*log10(|x| / |x - y|) in dB (ORT qdq_loss_debug's metric); inf if equal."""
    ref = np.asarray(reference, dtype=np.float64).ravel()
    noise = np.linalg.norm(ref - np.asarray(test, dtype=np.float64).ravel())
    if noise == 0.0:
        return float("inf")
    return float(20.0 * np.log10(max(float(np.linalg.norm(ref)), 1e-30) / float(noise)))


def _check_gate_values(min_agreement: float, min_confident: float) -> None:
    if not 0.0 <= min_agreement <= 1.0:
        raise InvalidArgumentError(f"--min-agreement {min_agreement} must be a fraction in [0, 1], e.g. 0.85")
    if not 0.0 <= min_confident <= 1.0:
        raise InvalidArgumentError(f"--min-confident-agreement {min_confident} must be a fraction in [0, 1], e.g. 0.99")


@dataclass(frozen=True)
class FidelityReport:
    """Agreement of a test model's logits with the FP32 reference on ``samples`` held-out inputs, and the gate it is
    judged against. Truthy exactly when it passes that gate (as ``export.Comparison`` is truthy when it passed): test
    an optional report with ``is not None``, never with ``if report``.

    ``min_agreement`` / ``min_confident_agreement``: the gate (edgeconv's default unless ``compare_logits`` or
    ``judged`` was given another); ``passed`` applies :func:`meets_gate` to it.
    """

    samples: int
    top1_agreement: float  # fraction in [0, 1]
    confident_samples: int
    confident_agreement: float  # NaN when no sample is confident
    top5_overlap: float  # mean |top5(ref) & top5(test)| / 5
    mean_kl: float  # mean KL(p_ref || p_test) in nats
    output_sqnr_db: float
    min_agreement: float = DEFAULT_MIN_AGREEMENT  # the gate this report is judged against
    min_confident_agreement: float = 0.0

    @property
    def passed(self) -> bool:
        """Whether the report clears its own gate (:func:`meets_gate`)."""
        return meets_gate(self, self.min_agreement, self.min_confident_agreement)

    def __bool__(self) -> bool:
        return self.passed

    def judged(self, min_agreement: float, min_confident: float = 0.0) -> FidelityReport:
        """The same figures judged against another gate."""
        _check_gate_values(min_agreement, min_confident)
        return replace(self, min_agreement=min_agreement, min_confident_agreement=min_confident)

    def as_dict(self) -> dict[str, float | int]:
        """The measured figures (the gate is recorded beside them by whoever applied it: the manifest's ``gate``)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _GATE_FIELDS}
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in values.items()}

    def summary(self) -> str:
        conf = (
            f"{self.confident_agreement:.1%} of {self.confident_samples} confident"
            if self.confident_samples
            else "no confident samples"
        )
        return (
            f"top-1 agreement {self.top1_agreement:.1%} of {self.samples} ({conf}), top-5 overlap "
            f"{self.top5_overlap:.1%}, mean KL {self.mean_kl:.4f}, output SQNR {self.output_sqnr_db:.1f} dB"
        )


_GATE_FIELDS = frozenset({"min_agreement", "min_confident_agreement"})


def compare_logits(
    reference: np.ndarray,
    test: np.ndarray,
    *,
    confident_probability: float = CONFIDENT_PROBABILITY,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    min_confident: float = 0.0,
) -> FidelityReport:
    """Fidelity of ``test`` logits ``(N, classes)`` against ``reference`` logits of the same shape, judged against the
    gate ``min_agreement`` (top-1, fraction) / ``min_confident`` (top-1 on confident samples)."""
    _check_gate_values(min_agreement, min_confident)
    ref = np.asarray(reference)
    out = np.asarray(test)
    if ref.shape != out.shape or ref.ndim != 2 or ref.shape[0] == 0:
        raise InvalidArgumentError(
            f"logits must be two equal (N, classes) arrays with N > 0, got {ref.shape} and {out.shape}"
        )
    p_ref, p_out = softmax(ref), softmax(out)
    agree = ref.argmax(axis=1) == out.argmax(axis=1)
    confident = p_ref.max(axis=1) > confident_probability
    k = min(5, ref.shape[1])
    top_ref = np.argsort(-ref, axis=1)[:, :k]
    top_out = np.argsort(-out, axis=1)[:, :k]
    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(top_ref, top_out, strict=True)])
    kl = np.sum(p_ref * (np.log(np.clip(p_ref, 1e-12, None)) - np.log(np.clip(p_out, 1e-12, None))), axis=1)
    return FidelityReport(
        samples=int(ref.shape[0]),
        top1_agreement=float(agree.mean()),
        confident_samples=int(confident.sum()),
        confident_agreement=float(agree[confident].mean()) if confident.any() else float("nan"),
        top5_overlap=float(overlap),
        mean_kl=float(kl.mean()),
        output_sqnr_db=sqnr_db(ref, out),
        min_agreement=min_agreement,
        min_confident_agreement=min_confident,
    )


def meets_gate(report: FidelityReport, min_agreement: float | None = None, min_confident: float | None = None) -> bool:
    """Top-1 agreement at least ``min_agreement`` overall and ``min_confident`` on the confident samples (vacuous
    when there are none: a random-weight network's softmax is flat). Without ``min_agreement``: the report's own gate;
    with it, ``min_confident`` defaults to 0."""
    if min_agreement is None:
        min_agreement = report.min_agreement
        min_confident = report.min_confident_agreement if min_confident is None else min_confident
    min_confident = 0.0 if min_confident is None else min_confident
    confident_ok = not report.confident_samples or report.confident_agreement >= min_confident
    return report.top1_agreement >= min_agreement and confident_ok


def check_gate(
    report: FidelityReport,
    min_agreement: float | None = None,
    *,
    min_confident: float | None = None,
    force: bool = False,
    hint: str = "",
) -> bool:
    """True when ``report`` clears ``min_agreement`` (top-1, fraction) and ``min_confident`` (top-1 on confident
    samples); without ``min_agreement``, the report's own gate (``report.judged(...)`` / ``compare_logits(...,
    min_agreement=...)``). Below either: ``QuantizationError`` naming what was measured and what to try, unless
    ``force`` (then False, and the caller writes the artifact anyway). Always ``bool(report.judged(min_agreement,
    min_confident))``."""
    if min_agreement is None:
        min_agreement = report.min_agreement
        min_confident = report.min_confident_agreement if min_confident is None else min_confident
    min_confident = 0.0 if min_confident is None else min_confident
    _check_gate_values(min_agreement, min_confident)
    if meets_gate(report, min_agreement, min_confident):
        return True
    if force:
        return False
    tips = hint or (
        "try --fallback auto (keeps the most sensitive layers in float), --calib-method percentile, "
        "more --calib-samples or your own --calib DIR of photos like your deployment data"
    )
    required = f"top-1 agreement >= {min_agreement:.1%}"
    if min_confident:
        required += f" overall and >= {min_confident:.1%} on confident samples"
    raise QuantizationError(
        f"INT8 fidelity below the gate: {report.summary()}; required {required}. {tips}; or pass --force to write it "
        "anyway"
    )
