"""Constants shared by test modules (conftest fixtures use them too)."""

from piaa.tasks.simulate import DemoSpec

# Small enough to train in a second or two, large enough for 10- and 100-shot episodes.
TINY = DemoSpec(
    n_train_raters=40, n_test_raters=6, n_personality_raters=12, train_ratings=(40, 90),
    test_ratings=(112, 140), likes_per_personality_rater=20, feature_dim=32, latent_dim=8,
)
FAST = ["epochs=15", "hidden=32,16"]
