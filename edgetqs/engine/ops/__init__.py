"""Engine kernels, one op family per module; each registers itself by opcode name."""
