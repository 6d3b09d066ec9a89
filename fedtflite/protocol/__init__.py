"""The wire protocol between fedtflite's ServerApp and ClientApp.

Record keys (:mod:`~fedtflite.protocol.keys`), the run's client settings
carried in every message (:mod:`~fedtflite.protocol.settings`), and the codec
of a message for many clients and its reply (:mod:`~fedtflite.protocol.replies`).
Both apps import it; it imports neither.
"""
