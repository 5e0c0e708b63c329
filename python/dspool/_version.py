"""The SDK's version: the build backend and the control plane, which serves
the SDK as dspool-VERSION.tar.gz, read it from here."""

__version__ = "0.1.0"
