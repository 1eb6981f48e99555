"""Standard trainer extensions."""

__all__: list[str] = []
