"""The motion field (HexPlane + MLP heads) and its regularisers (ARAP, TV-3D)."""
