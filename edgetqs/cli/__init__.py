"""Command-line interface: one module per pipeline stage, registered in app.py; each a thin caller
of the public API (edgetqs/api.py).

Stage modules import the library inside their ``run`` functions on purpose: ``edgetqs --help``
builds every subcommand's parser, and loading TensorFlow, AI Edge Quantizer, numba and matplotlib
for it would take seconds. Those imports guard start-up time, not import cycles.
"""
