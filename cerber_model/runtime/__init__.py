"""The runtime tier: everything the light analyzer ships (numpy, scipy, scikit-image,
tifffile, Pillow, ONNX Runtime). An import-linter contract keeps TensorFlow, Keras,
onnx and the training tier out of it.
"""
