"""Speech-to-text, LLM and text-to-speech providers behind one small interface per kind."""
