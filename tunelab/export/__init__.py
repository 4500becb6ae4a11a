"""Run-folder formats and export to other runtimes: ONNX (onnxruntime) and GGUF (llama.cpp)."""
