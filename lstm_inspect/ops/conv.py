"""Convolution layers: Conv1D/2D/3D, SeparableConv, DepthwiseConv (see ``convolution`` for the maths)."""
