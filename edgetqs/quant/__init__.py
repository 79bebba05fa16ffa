"""The quantization core: weight formats, modes, the reference quantizer, one
description per TFLite op, and the one AI Edge Quantizer adapter.

Everything above (TQS, ranges, planner, converter) asks these modules what a
format is, which inputs of an op are weights and which axis holds their output
channels, instead of keeping its own table.
"""
