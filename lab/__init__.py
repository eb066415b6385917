"""The esvpn lab: the whole system as real processes in network namespaces.

Used by ``make demo`` / ``make demo-check`` (lab/__main__.py) and by the chaos
suite (tests/system/test_chaos.py). See lab/lab.py.
"""
