"""The dataset builders: from the real data (BCCD, ALL-IDB, TXL-PBC, PBC) to training sets. Qt-free; below the model
packages (they read the builders' formats), above the bottom floor."""
