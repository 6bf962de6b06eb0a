"""In-process servers that speak providers' documented wire protocols, for tests."""
