"""The eleven requirements of Anlage 31b BMV-Ä § 5 Abs. 1, one module each.

`compliance.registry` finds every `nrNN_<topic>.py` here (and `kbv_nrNN_<topic>` modules
on sys.path). A module holds the requirement (`REQUIREMENT`) and its `@check`s.
"""
