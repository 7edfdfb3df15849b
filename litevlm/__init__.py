"""litevlm: a lightweight, grounded vision-language assistant for medical and life-science
images. Research use only, not a medical device."""

__version__ = "0.1.0"
