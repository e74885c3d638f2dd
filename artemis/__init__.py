"""artemis: referential video understanding with multimodal LLMs."""

__version__ = "0.1.0"
