"""Making a trained model smaller and faster: dynamic int8 quantisation (PyTorch and ONNX
Runtime), with latency / size measurement shared by every method."""
