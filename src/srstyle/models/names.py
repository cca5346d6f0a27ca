"""Names of the built-in architectures, importable without torch (config validation runs in torch-free
processes such as the service). tests/test_config.py checks this list against the registry."""

SR_ARCHITECTURES = ("dbpn", "drcn", "edsr", "espcn", "fsrcnn", "srcnn", "srdensenet", "srgan", "srresnet", "vdsr")
