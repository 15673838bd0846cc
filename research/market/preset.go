package market

// Presets are named symbol lists for market scans, in NormalizeSymbol's canonical form.
var Presets = map[string][]string{
	// The largest US-listed companies by market value (early 2026), one share class each.
	"us-megacaps": {"AAPL", "MSFT", "NVDA", "GOOGL", "AMZN", "META", "AVGO", "TSLA", "BRK-B", "JPM"},
	// Large US-listed semiconductor makers and designers.
	"semis": {"NVDA", "AVGO", "AMD", "TSM", "QCOM", "TXN", "MU", "INTC"},
	// The eleven Select Sector SPDR funds, one per GICS sector.
	"sector-etfs": {"XLB", "XLC", "XLE", "XLF", "XLI", "XLK", "XLP", "XLRE", "XLU", "XLV", "XLY"},
	// The largest crypto assets quoted against the US dollar (stablecoins left out: they do not move).
	"crypto-majors": {"BTC-USD", "ETH-USD", "XRP-USD", "BNB-USD", "SOL-USD", "DOGE-USD", "ADA-USD"},
}
