"""Test helpers (importable as `helpers.*`: pytest puts tests/ on sys.path); conftest.py holds
only fixtures. signal_at.py and kill_mid_save.py are callbacks that train.py subprocesses load."""
