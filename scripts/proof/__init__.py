"""The long versions of the proof scenarios (tests/proof): `python -m scripts.proof.<name> --help`."""
