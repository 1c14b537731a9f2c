"""`python -m nap_hf.testing ...`: the tiny offline artefacts (see :func:`nap_hf.testing.main`)."""

from . import main

main()
