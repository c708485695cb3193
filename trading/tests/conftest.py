from trading.tests.paper_fixtures import market, paper_settings, published  # noqa: F401
