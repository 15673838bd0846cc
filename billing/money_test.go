package billing_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tokensforge/forgebot/billing"
)

func TestParseMoney(t *testing.T) {
	for in, want := range map[string]billing.Money{
		"1.25":      1_250_000,
		"$0.000350": 350,
		"0.5":       500_000,
		"5":         5_000_000,
		"$5.00":     5_000_000,
		"-2.1":      -2_100_000,
		" 0.000001": 1,
		"0":         0,
	} {
		got, err := billing.ParseMoney(in)
		if err != nil || got != want {
			t.Errorf("ParseMoney(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "$", "abc", "1.", ".5", "1.0000001", "1,25", "1e3", "--1", "$-1", "1.2.3", "0x10", "99999999999", "+1", "1 000"} {
		if got, err := billing.ParseMoney(in); !errors.Is(err, billing.ErrInvalidAmount) {
			t.Errorf("ParseMoney(%q) = %d, %v; want ErrInvalidAmount", in, got, err)
		}
	}
}

func TestMoneyString(t *testing.T) {
	for m, want := range map[billing.Money]string{
		350:        "$0.000350",
		1_090:      "$0.001090",
		4_999_240:  "$4.999240",
		12_500:     "$0.012500",
		20_000:     "$0.02",
		1_250_000:  "$1.25",
		0:          "$0.00",
		1:          "$0.000001",
		-100_000:   "-$0.10",
		12_345_678: "$12.345678",
	} {
		if got := m.String(); got != want {
			t.Errorf("Money(%d).String() = %q, want %q", int64(m), got, want)
		}
	}
}

func FuzzParseMoney(f *testing.F) {
	for _, s := range []string{"1.25", "$0.000350", "0.5", "-3", "1.0000001", "", "$", "9999999999.999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := billing.ParseMoney(s)
		if err != nil {
			if !errors.Is(err, billing.ErrInvalidAmount) {
				t.Fatalf("ParseMoney(%q) error %v is not ErrInvalidAmount", s, err)
			}
			return
		}
		// Whatever parses prints back to the same amount.
		back, err := billing.ParseMoney(m.String())
		if err != nil || back != m {
			t.Fatalf("ParseMoney(%q) = %d, printed %q, parsed back as %d, %v", s, m, m.String(), back, err)
		}
	})
}

func TestPriceCost(t *testing.T) {
	p := billing.Price{InputPerM: 150_000, OutputPerM: 600_000} // $0.15 / $0.60 per 1M
	for _, tc := range []struct {
		in, out int64
		want    billing.Money
	}{
		{0, 0, 0},
		{1, 0, 1},               // 0.15 micro-dollars rounds up to 1
		{1_000_000, 0, 150_000}, // exactly $0.15
		{1_000_000, 1_000_000, 750_000},
		{1234, 567, 526}, // 185.1 + 340.2 = 525.3 -> 526, rounded once on the sum
		{3, 3, 3},        // 0.45 + 1.8 = 2.25 -> 3 (rounding each part would give 1 + 2)
		{-5, 10, 6},      // negative counts are zero
	} {
		if got := p.Cost(tc.in, tc.out); got != tc.want {
			t.Errorf("Cost(%d, %d) = %d, want %d", tc.in, tc.out, got, tc.want)
		}
	}
	big := billing.Price{InputPerM: 100 * billing.Micro, OutputPerM: 100 * billing.Micro}
	if got, want := big.Cost(2_000_000_000, 2_000_000_000), billing.Money(400_000)*billing.Micro; got != want {
		t.Errorf("Cost of 2B+2B tokens at $100/M = %s, want %s", got, want)
	}
}

func TestParseIdentity(t *testing.T) {
	for _, ok := range []string{"telegram:123", "discord:456", "cli:alice", "telegram:-1001234"} {
		if _, err := billing.ParseIdentity(ok); err != nil {
			t.Errorf("ParseIdentity(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "telegram", ":1", "telegram:", "Telegram:1", "tele gram:1", "cli:a b", "cli:a:b"} {
		if _, err := billing.ParseIdentity(bad); err == nil {
			t.Errorf("ParseIdentity(%q) accepted it", bad)
		}
	}
}

func ExampleMoney_String() {
	m, _ := billing.ParseMoney("$0.000350")
	fmt.Println(m, m.Micros())
	fmt.Println(billing.Price{InputPerM: 150_000, OutputPerM: 600_000}.Cost(1200, 350))
	// Output:
	// $0.000350 350
	// $0.000390
}

// TestMoneyOverflow: absurd token counts and sums return ErrOverflow (or
// saturate where only a display figure is made); nothing panics.
func TestMoneyOverflow(t *testing.T) {
	p := billing.Price{InputPerM: billing.Micro, OutputPerM: 4 * billing.Micro} // $1 / $4 per 1M
	for _, tc := range []struct{ in, out int64 }{
		{0, 3e18}, {1<<63 - 1, 1<<63 - 1}, {0, 1<<63 - 1}, {9e18, 9e18},
	} {
		if _, err := p.CostChecked(tc.in, tc.out); !errors.Is(err, billing.ErrOverflow) {
			t.Errorf("CostChecked(%d, %d) = %v, want ErrOverflow", tc.in, tc.out, err)
		}
		if got := p.Cost(tc.in, tc.out); got != billing.MaxMoney {
			t.Errorf("Cost(%d, %d) = %d, want it saturated", tc.in, tc.out, got)
		}
	}
	if m, err := p.CostChecked(1_000_000, 1_000_000); err != nil || m != 5*billing.Micro {
		t.Errorf("CostChecked(1M, 1M) = %d, %v", m, err)
	}
	if _, err := billing.Add(billing.MaxMoney, 1); !errors.Is(err, billing.ErrOverflow) {
		t.Errorf("Add(max, 1) = %v", err)
	}
	if _, err := billing.Sub(-billing.MaxMoney, 2); !errors.Is(err, billing.ErrOverflow) {
		t.Errorf("Sub(-max, 2) = %v", err)
	}
	if _, err := billing.Sum(billing.MaxMoney/2, billing.MaxMoney/2, 2); !errors.Is(err, billing.ErrOverflow) {
		t.Errorf("Sum = %v", err)
	}
	if s, err := billing.Sum(1, 2, -3, 10); err != nil || s != 10 {
		t.Errorf("Sum(1, 2, -3, 10) = %d, %v", s, err)
	}
	if got := billing.SaturatingAdd(billing.MaxMoney, 5); got != billing.MaxMoney {
		t.Errorf("SaturatingAdd = %d", got)
	}
	// Amounts beyond MaxAmount are refused before any SQL.
	big := billing.MaxAmount + 1
	if err := (billing.PostRequest{Identity: billing.Identity{Platform: "cli", ExternalID: "a"}, Bucket: billing.BucketCredit,
		Kind: billing.KindTopup, Amount: big, Key: "k"}).Validate(); !errors.Is(err, billing.ErrInvalidAmount) {
		t.Errorf("post of %d = %v", big, err)
	}
	if err := (billing.HoldRequest{AccountID: 1, Bucket: billing.BucketCredit, Amount: big, TTL: 1, Key: "k"}).Validate(); !errors.Is(err, billing.ErrInvalidAmount) {
		t.Errorf("hold of %d = %v", big, err)
	}
	if err := (billing.CaptureRequest{HoldID: 1, Amount: big, Key: "k"}).Validate(); !errors.Is(err, billing.ErrInvalidAmount) {
		t.Errorf("capture of %d = %v", big, err)
	}
}

// TestFine: a figure that grows while watched keeps six decimals from zero.
func TestFine(t *testing.T) {
	if got := billing.Fine(0, 760, billing.Micro/2); strings.Join(got, " ") != "$0.000000 $0.000760 $0.500000" {
		t.Fatalf("Fine = %v", got)
	}
}

// TestAlike: amounts shown together get the same number of decimals.
func TestAlike(t *testing.T) {
	got := billing.Alike(1090, 1909, 5*billing.Micro)
	if strings.Join(got, " ") != "$0.001090 $0.001909 $5.000000" {
		t.Fatalf("Alike = %v", got)
	}
	if got := billing.Alike(0, 2*billing.Micro+500_000); strings.Join(got, " ") != "$0.00 $2.50" {
		t.Fatalf("Alike = %v", got)
	}
}
