"""County bulletins: the nightly plot forecasts said the way food-security forecasting says
them — per county and season, as % of the county's normal, with an interval calibrated at
county level and the hindcast skill of the forecast at this point of the season
(docs/DESIGN.md, "County bulletins").

Pure functions: :mod:`.figures` (weighted county means, the county's record of realized
yields and where a forecast stands in it), :mod:`.skill` (hindcast errors, the naive and
trend baselines, county-level conformal factors), :mod:`.signals` (rain and heat to date
against the county's normal to date), :mod:`.forecasts` (a night's ``county_forecasts``
rows), :mod:`.render` (the bulletin's HTML and CSV). The I/O edge: :mod:`.publish` (what the
scoring night's publish step runs).
"""
