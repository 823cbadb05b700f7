"""Reading and checking weekly datasets, and the simulated fleet that ships as the sample."""
