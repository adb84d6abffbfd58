"""The device side: encoder spec, batch encoder and packer, wire format, C generator.

Import the submodules directly (``softbits.device.spec`` …); this package stays light so that
``softbits --help`` does not load numba.
"""

__all__: list[str] = []
