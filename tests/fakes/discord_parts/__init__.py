"""The parts the fake Discord (tests/fakes/discord.py) is made of, one module per resource
family of Discord's API: server, users, applications, guilds, channels, commands, interactions,
webhooks, gateway."""
