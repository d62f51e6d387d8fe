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
    ref = np.asarray(reference).ravel()
    if ref.dtype not in (np.float32, np.float64):
        ref = ref.astype(np.float64)
    noise = (ref - np.asarray(test).ravel()).astype(ref.dtype, copy=False)
    # the sums in float64 without float64 copies of the (often 100 MB) tensors: ten times faster than converting them
    return _sqnr(_energy(ref), _energy(noise))


def _energy(x: np.ndarray) -> float:
    return float(np.einsum("i,i->", x, x, dtype=np.float64))


def _sqnr(signal_energy: float, noise_energy: float) -> float:
    """``sqnr_db`` from the sums of squares of the signal and of the noise (accumulated chunk by chunk)."""
    if noise_energy == 0.0:
        return float("inf")
    return float(10.0 * np.log10(max(signal_energy, 1e-60) / noise_energy))


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
    unit: str = "image"  # what a sample is: an image (class scores), or a pixel of a label map
    mean_iou: float = float("nan")  # label maps: mean over classes of IoU(FP32 map, test map)
    images: int = 0  # label maps: the images the pixels come from

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
        skip = _GATE_FIELDS | (_LABEL_MAP_FIELDS if self.unit == "image" else frozenset())
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in values.items()}

    def summary(self) -> str:
        conf = (
            f"{self.confident_agreement:.1%} of {self.confident_samples:,} confident"
            if self.confident_samples
            else "no confident samples"
        )
        if self.unit == "pixel":
            return (
                f"per-pixel agreement {self.top1_agreement:.2%} of {self.samples:,} pixels in {self.images} images "
                f"({conf}), mean IoU {self.mean_iou:.3f}, mean KL {self.mean_kl:.4f}, output SQNR "
                f"{self.output_sqnr_db:.1f} dB"
            )
        return (
            f"top-1 agreement {self.top1_agreement:.1%} of {self.samples} ({conf}), top-5 overlap "
            f"{self.top5_overlap:.1%}, mean KL {self.mean_kl:.4f}, output SQNR {self.output_sqnr_db:.1f} dB"
        )


_GATE_FIELDS = frozenset({"min_agreement", "min_confident_agreement"})
_LABEL_MAP_FIELDS = frozenset({"unit", "mean_iou", "images"})  # in a label map's figures only


def compare_logits(
    reference: np.ndarray,
    test: np.ndarray,
    *,
    confident_probability: float = CONFIDENT_PROBABILITY,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    min_confident: float = 0.0,
) -> FidelityReport:
    """Fidelity of ``test`` logits ``(N, classes)`` against ``reference`` logits of the same shape, judged against the
    gate ``min_agreement`` (top-1, fraction) / ``min_confident`` (top-1 on confident samples).

    Label maps, ``(N, classes, H, W)`` class scores per pixel: every pixel is a sample (agreement of the two label
    maps, confident pixels, top-5 overlap, KL), and ``mean_iou`` compares the FP32 and test label maps class by class
    (intersection over union, averaged over the classes either map contains). Computed image by image, so that a
    batch of 520x520 maps needs no more memory than one."""
    _check_gate_values(min_agreement, min_confident)
    ref = np.asarray(reference)
    out = np.asarray(test)
    if ref.shape != out.shape or ref.ndim not in (2, 4) or ref.shape[0] == 0:
        raise InvalidArgumentError(
            "logits must be two equal (N, classes) or (N, classes, H, W) arrays with N > 0, got "
            f"{ref.shape} and {out.shape}"
        )
    pixels = ref.ndim == 4
    classes = ref.shape[1]
    k = min(5, classes)
    agree = confident = confident_agree = 0
    overlap = kl = signal = noise = 0.0
    intersection, union = np.zeros(classes), np.zeros(classes)
    chunks = (
        ((r.reshape(classes, -1).T, o.reshape(classes, -1).T) for r, o in zip(ref, out, strict=True))
        if pixels
        else ((ref, out),)
    )
    for r, o in chunks:
        r, o = r.astype(np.float64), o.astype(np.float64)
        p_ref, p_out = softmax(r), softmax(o)
        label_ref, label_out = r.argmax(axis=1), o.argmax(axis=1)
        same = label_ref == label_out
        sure = p_ref.max(axis=1) > confident_probability
        agree += int(same.sum())
        confident += int(sure.sum())
        confident_agree += int((same & sure).sum())
        top_ref, top_out = np.argsort(-r, axis=1)[:, :k], np.argsort(-o, axis=1)[:, :k]
        overlap += float((top_ref[:, :, None] == top_out[:, None, :]).any(axis=2).sum()) / k
        kl += float(np.sum(p_ref * (np.log(np.clip(p_ref, 1e-12, None)) - np.log(np.clip(p_out, 1e-12, None)))))
        signal += float(np.sum(r * r))
        noise += float(np.sum((r - o) ** 2))
        if pixels:
            both = np.bincount(label_ref[same], minlength=classes)
            intersection += both
            union += np.bincount(label_ref, minlength=classes) + np.bincount(label_out, minlength=classes) - both
    samples = ref.shape[0] * (ref.shape[2] * ref.shape[3] if pixels else 1)
    present = union > 0
    return FidelityReport(
        samples=int(samples),
        top1_agreement=agree / samples,
        confident_samples=confident,
        confident_agreement=confident_agree / confident if confident else float("nan"),
        top5_overlap=overlap / samples,
        mean_kl=kl / samples,
        output_sqnr_db=_sqnr(signal, noise),
        min_agreement=min_agreement,
        min_confident_agreement=min_confident,
        unit="pixel" if pixels else "image",
        mean_iou=float(np.mean(intersection[present] / union[present])) if pixels else float("nan"),
        images=int(ref.shape[0]),
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
