"""piaa: personalized image aesthetics assessment by meta-learning."""

__version__ = "0.1.0"
