"""Methods we compare against, written against the same Method interface. Importing registers them."""

from piaa.baselines import finetune, giaa, knn, pam, ridge, user_mean  # noqa: F401
