"""The suite's shared helpers live in `tests/ul_testkit.py`; this file exists so that pytest puts `tests/` on
`sys.path` (rootdir conftest, prepend import mode) and every test module can `import ul_testkit`."""
