"""Worker processes seen from the GUI: training runs, the queue that starts them, the session worker.

Nothing here imports torch: every worker is a separate `python -m ul_engine.worker ...` process.
"""
