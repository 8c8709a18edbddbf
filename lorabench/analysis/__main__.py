"""`python -m lorabench.analysis key=value ...`: the study's report (`analysis.report`)."""

from lorabench.analysis.report import main

main()
