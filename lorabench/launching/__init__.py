"""Starting a run: the cheap checks before any rank starts (`preflight`), the process topology
and the launcher the hardware names (`topology`)."""
