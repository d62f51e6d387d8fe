"""The stages that work on the exported QDQ ONNX graph: ONNX Runtime's static quantization with each target's scheme
(``ort_static``), the weights' grid and saturation-safe form (``weights``), centred activations (``offsets``),
adaptive rounding (``adaround``), sensitivity (``sensitivity``) and high-precision fallback (``fallback``)."""
