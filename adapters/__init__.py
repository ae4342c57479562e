"""Ready-made adapters, installed as :mod:`snakepit.adapters`.

- ``snakepit.adapters.showcase:ShowcaseAdapter``: the default adapter.
- ``snakepit.adapters.chaos:ChaosAdapter``: fault injection for the reliability tests.
"""
