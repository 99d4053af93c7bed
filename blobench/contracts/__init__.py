"""The contracts a contributor writes against: the errors (``errors``), typed and validated
hyperparameters (``params``) and the Problem API (``problem``). Imports nothing else of blobench.
"""
