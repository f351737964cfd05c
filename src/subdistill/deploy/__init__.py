"""Deploying a trained student: export with a parity check, int8 quantisation, profiling
against the teacher, and prediction on image files. onnx and onnxruntime (the `deploy`
extra) are imported only when an ONNX file is made or run."""
