"""Running an exported model on the line: needs only onnxruntime, numpy and Pillow.

Nothing in this package imports torch, SQLAlchemy or Qt (a test enforces it), so a small
Python service can ``pip install densestudio`` without the training stack and call
``densestudio.runtime.onnx_model.load_onnx(path).predict(images)``.
"""
