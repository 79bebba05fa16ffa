"""Boards over SSH: transport, provisioning, atomic flashing, fleets, the
on-device runner, validation and reports.

Layout on a board (``root`` defaults to ``~/edgetqs``)::

    <root>/models/<slot>/   one verified bundle per slot (manifest.json, model.tflite, ..., runner.py)
    <root>/current          symlink -> models/<slot>, switched atomically
    <root>/models/.incoming-*  uploads in progress; never pointed at
"""
