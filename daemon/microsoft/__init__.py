"""Microsoft 365 access (Entra ID app-only tokens through MSAL, Microsoft Graph through httpx), shared by
the Outlook calendar source and the Graph mail transport."""
