"""`convert --stream`: `convert` is the host side (plan, parity, manifests, files), `jobs` the host's side of the
children, `child` the streaming conversion and parity children.
"""
