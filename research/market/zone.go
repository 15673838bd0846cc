package market

// The zone database is embedded so that a bar's exchange date comes out the same on a machine without
// /usr/share/zoneinfo (a scratch container): without it time.LoadLocation fails, the fixed-offset fallback
// takes today's offset, and a bar dated across a daylight-saving change can shift by a day.
import _ "time/tzdata"
