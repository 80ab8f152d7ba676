"""The networks as graphs: the straightforward Keras graph, the fused graphs (Keras for
training, ONNX for shipping) and making bundles. This tier needs TensorFlow/Keras or onnx;
the runtime never imports it.
"""
