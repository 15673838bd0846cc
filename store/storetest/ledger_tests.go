package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
)

const dime = 100_000 // $0.10 in micro-dollars

func testMigrations(t *testing.T, h Harness) {
	s := h.Open(t, Options{})
	ctx := t.Context()
	if err := s.CheckSchema(ctx); !errors.Is(err, billing.ErrSchemaBehind) {
		t.Fatalf("CheckSchema on an empty database = %v, want ErrSchemaBehind", err)
	}
	applied, err := s.Migrate(ctx)
	if err != nil || len(applied) == 0 {
		t.Fatalf("Migrate = %v, %v; want migrations applied", applied, err)
	}
	if err := s.CheckSchema(ctx); err != nil {
		t.Fatalf("CheckSchema after migrate: %v", err)
	}
	again, err := s.Migrate(ctx)
	if err != nil || len(again) != 0 {
		t.Fatalf("second Migrate = %v, %v; want nothing applied", again, err)
	}
}

func testAccounts(t *testing.T, h Harness) {
	b := setup(t, h)
	alice := billing.Identity{Platform: "telegram", ExternalID: "42"}
	if _, err := b.store.AccountOf(b.ctx, alice); !errors.Is(err, billing.ErrUnknownAccount) {
		t.Fatalf("AccountOf before creation = %v, want ErrUnknownAccount", err)
	}
	id1, err := b.store.EnsureAccount(b.ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := b.store.EnsureAccount(b.ctx, alice)
	if err != nil || id2 != id1 {
		t.Fatalf("second EnsureAccount = %d, %v; want %d", id2, err, id1)
	}
	bal, err := b.store.Balances(b.ctx, id1)
	if err != nil || len(bal) != 2 || bal[billing.BucketCredit].Posted != 0 || bal[billing.BucketRouted].Posted != 0 {
		t.Fatalf("new account balances = %+v, %v; want both buckets at zero", bal, err)
	}
	if _, err := b.store.Balances(b.ctx, id1+1000); !errors.Is(err, billing.ErrUnknownAccount) {
		t.Fatalf("Balances of a missing account = %v, want ErrUnknownAccount", err)
	}
	if _, err := b.store.EnsureAccount(b.ctx, billing.Identity{Platform: "Tele gram", ExternalID: "1"}); err == nil {
		t.Fatal("EnsureAccount accepted a malformed identity")
	}

	// Many goroutines creating the same new identity agree on one account.
	bob := billing.Identity{Platform: "discord", ExternalID: "7"}
	ids := make([]billing.AccountID, 16)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			id, err := b.store.EnsureAccount(b.ctx, bob)
			if err != nil {
				t.Errorf("EnsureAccount: %v", err)
			}
			ids[i] = id
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent EnsureAccount gave accounts %v", ids)
		}
	}
}

func testLink(t *testing.T, h Harness) {
	b := setup(t, h)
	tg := billing.Identity{Platform: "telegram", ExternalID: "1"}
	dc := billing.Identity{Platform: "discord", ExternalID: "2"}
	acc := b.fund(t, "telegram:1", billing.BucketCredit, 5*billing.Micro)

	if _, err := b.store.LinkIdentity(b.ctx, billing.Identity{Platform: "cli", ExternalID: "nobody"}, dc); !errors.Is(err, billing.ErrUnknownAccount) {
		t.Fatalf("link from an unknown identity = %v, want ErrUnknownAccount", err)
	}
	// discord:2 exists but has no activity: linking moves it.
	if _, err := b.store.EnsureAccount(b.ctx, dc); err != nil {
		t.Fatal(err)
	}
	got, err := b.store.LinkIdentity(b.ctx, tg, dc)
	if err != nil || got != acc {
		t.Fatalf("LinkIdentity = %d, %v; want %d", got, err, acc)
	}
	if a, _ := b.store.AccountOf(b.ctx, dc); a != acc {
		t.Fatalf("discord:2 maps to %d, want %d", a, acc)
	}
	a, err := b.store.Account(b.ctx, acc)
	if err != nil || len(a.Identities) != 2 {
		t.Fatalf("Account = %+v, %v; want two identities", a, err)
	}
	// The same wallet from either side.
	if bal := b.balance(t, acc, billing.BucketCredit); bal.Available != 5*billing.Micro {
		t.Fatalf("linked balance = %s", bal.Available)
	}
	// A second discord identity on the same account is refused.
	if _, err := b.store.LinkIdentity(b.ctx, tg, billing.Identity{Platform: "discord", ExternalID: "3"}); !errors.Is(err, billing.ErrLinkConflict) {
		t.Fatalf("second discord identity = %v, want ErrLinkConflict", err)
	}
	// An identity whose own wallet has money cannot be swallowed.
	b.fund(t, "cli:carol", billing.BucketRouted, billing.Micro)
	if _, err := b.store.LinkIdentity(b.ctx, tg, billing.Identity{Platform: "cli", ExternalID: "carol"}); !errors.Is(err, billing.ErrLinkConflict) {
		t.Fatalf("link of a funded identity = %v, want ErrLinkConflict", err)
	}
	b.mustCheck(t)
}

func testPostIdempotency(t *testing.T, h Harness) {
	b := setup(t, h)
	who := billing.Identity{Platform: "telegram", ExternalID: "42"}
	req := billing.PostRequest{Identity: who, Bucket: billing.BucketCredit, Kind: billing.KindTopup, Amount: 5 * billing.Micro, Key: "k1", Actor: "op"}
	first, err := b.store.Post(b.ctx, req)
	if err != nil || first.Replayed {
		t.Fatalf("first Post = %+v, %v", first, err)
	}
	again, err := b.store.Post(b.ctx, req)
	if err != nil || !again.Replayed || again.ID != first.ID {
		t.Fatalf("repeated Post = %+v, %v; want a replay of entry %d", again, err, first.ID)
	}
	for name, bad := range map[string]billing.PostRequest{
		"other amount": {Identity: who, Bucket: billing.BucketCredit, Kind: billing.KindTopup, Amount: 6 * billing.Micro, Key: "k1"},
		"other bucket": {Identity: who, Bucket: billing.BucketRouted, Kind: billing.KindTopup, Amount: 5 * billing.Micro, Key: "k1"},
		"other user":   {Identity: billing.Identity{Platform: "telegram", ExternalID: "43"}, Bucket: billing.BucketCredit, Kind: billing.KindTopup, Amount: 5 * billing.Micro, Key: "k1"},
	} {
		if _, err := b.store.Post(b.ctx, bad); !errors.Is(err, billing.ErrIdempotencyConflict) {
			t.Errorf("%s with a used key = %v, want ErrIdempotencyConflict", name, err)
		}
	}
	// The refused "other user" must not have created an account.
	if _, err := b.store.AccountOf(b.ctx, billing.Identity{Platform: "telegram", ExternalID: "43"}); !errors.Is(err, billing.ErrUnknownAccount) {
		t.Errorf("a refused post created an account: %v", err)
	}
	for name, bad := range map[string]billing.PostRequest{
		"no key":        {Identity: who, Bucket: billing.BucketCredit, Kind: billing.KindTopup, Amount: 1},
		"zero":          {Identity: who, Bucket: billing.BucketCredit, Kind: billing.KindTopup, Amount: 0, Key: "z"},
		"negative":      {Identity: who, Bucket: billing.BucketCredit, Kind: billing.KindTopup, Amount: -1, Key: "n"},
		"bad bucket":    {Identity: who, Bucket: "gold", Kind: billing.KindTopup, Amount: 1, Key: "b"},
		"hold via post": {Identity: who, Bucket: billing.BucketCredit, Kind: billing.KindHold, Amount: 1, Key: "h"},
	} {
		if _, err := b.store.Post(b.ctx, bad); err == nil {
			t.Errorf("%s: Post accepted it", name)
		}
	}
	if bal := b.balance(t, first.AccountID, billing.BucketCredit); bal.Posted != 5*billing.Micro {
		t.Fatalf("credit posted = %s, want $5.00", bal.Posted)
	}
	if bal := b.balance(t, first.AccountID, billing.BucketRouted); bal.Posted != 0 {
		t.Fatalf("routed posted = %s, want $0.00", bal.Posted)
	}
	entries, err := b.store.Entries(b.ctx, first.AccountID, 10)
	if err != nil || len(entries) != 1 {
		t.Fatalf("entries = %v, %v; want exactly one", entries, err)
	}
	b.mustCheck(t)
}

func testConcurrentSameKey(t *testing.T, h Harness) {
	b := setup(t, h)
	acc := b.fund(t, "cli:alice", billing.BucketCredit, billing.Micro)
	var wg sync.WaitGroup
	holds := make([]billing.Hold, 16)
	for i := range holds {
		wg.Go(func() {
			h, err := b.store.PlaceHold(b.ctx, billing.HoldRequest{AccountID: acc, Bucket: billing.BucketCredit, Amount: dime, TTL: time.Hour, Key: "same", Reference: "run:1"})
			if err != nil {
				t.Errorf("PlaceHold: %v", err)
			}
			holds[i] = h
		})
	}
	wg.Wait()
	replays := 0
	for _, h := range holds {
		if h.ID != holds[0].ID {
			t.Fatalf("one key made several holds: %d and %d", h.ID, holds[0].ID)
		}
		if h.Replayed {
			replays++
		}
	}
	if replays != len(holds)-1 {
		t.Fatalf("%d replays, want %d", replays, len(holds)-1)
	}
	if bal := b.balance(t, acc, billing.BucketCredit); bal.Held != dime {
		t.Fatalf("held = %s, want $0.10", bal.Held)
	}
	b.mustCheck(t)
}

func testNegativeAdjustment(t *testing.T, h Harness) {
	b := setup(t, h)
	acc := b.fund(t, "cli:alice", billing.BucketCredit, billing.Micro)
	if _, err := b.store.PlaceHold(b.ctx, billing.HoldRequest{AccountID: acc, Bucket: billing.BucketCredit, Amount: 600_000, TTL: time.Hour, Key: "h"}); err != nil {
		t.Fatal(err)
	}
	_, err := b.store.Post(b.ctx, billing.PostRequest{AccountID: acc, Bucket: billing.BucketCredit, Kind: billing.KindAdjustment, Amount: -500_000, Key: "adj1"})
	if !errors.Is(err, billing.ErrInsufficientFunds) {
		t.Fatalf("adjustment below held = %v, want ErrInsufficientFunds", err)
	}
	if _, err := b.store.Post(b.ctx, billing.PostRequest{AccountID: acc, Bucket: billing.BucketCredit, Kind: billing.KindAdjustment, Amount: -400_000, Key: "adj2"}); err != nil {
		t.Fatalf("adjustment within available: %v", err)
	}
	if bal := b.balance(t, acc, billing.BucketCredit); bal.Available != 0 || bal.Posted != 600_000 {
		t.Fatalf("balance = %+v", bal)
	}
	b.mustCheck(t)
}

// testConcurrentHolds is the headline test: 64 goroutines race for
// $0.10 holds on exactly $1.00; then holds are captured (some partially),
// released and expired, and the ledger checks clean.
func testConcurrentHolds(t *testing.T, h Harness) {
	b := setup(t, h)
	acc := b.fund(t, "telegram:42", billing.BucketCredit, billing.Micro)
	b.fund(t, "telegram:42", billing.BucketRouted, 3*billing.Micro) // must stay untouched

	var (
		mu     sync.Mutex
		placed []billing.Hold
		short  int
		start  = make(chan struct{})
		wg     sync.WaitGroup
	)
	for i := range 64 {
		wg.Go(func() {
			<-start
			h, err := b.store.PlaceHold(b.ctx, billing.HoldRequest{
				AccountID: acc, Bucket: billing.BucketCredit, Amount: dime, TTL: 10 * time.Minute,
				Key: fmt.Sprintf("hold-%d", i), Reference: fmt.Sprintf("run:%d", i), Actor: "test",
			})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				placed = append(placed, h)
			case errors.Is(err, billing.ErrInsufficientFunds):
				short++
			default:
				t.Errorf("PlaceHold %d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if len(placed) != 10 || short != 54 {
		t.Fatalf("%d holds placed and %d refused, want 10 and 54", len(placed), short)
	}
	bal := b.balance(t, acc, billing.BucketCredit)
	if bal.Held != billing.Micro || bal.Available != 0 {
		t.Fatalf("after the race: %+v, want $1.00 held and $0.00 available", bal)
	}
	b.mustCheck(t)

	// Capture four (two partially), release three, let three expire; the
	// captures and releases run concurrently too.
	var captured billing.Money
	for i := range 4 {
		captured += billing.Money(dime - i*10_000)
	}
	for i, h := range placed[:7] {
		wg.Go(func() {
			var err error
			if i < 4 {
				_, err = b.store.CaptureHold(b.ctx, billing.CaptureRequest{HoldID: h.ID, Amount: billing.Money(dime - i*10_000), Key: fmt.Sprintf("cap-%d", h.ID)})
			} else {
				_, err = b.store.ReleaseHold(b.ctx, billing.ReleaseRequest{HoldID: h.ID, Key: fmt.Sprintf("rel-%d", h.ID)})
			}
			if err != nil {
				t.Errorf("resolve hold %d: %v", h.ID, err)
			}
		})
	}
	wg.Wait()
	b.clock.Advance(10*time.Minute + time.Second)
	if a, _ := b.store.Audit(b.ctx); len(billing.Check(a)) != 3 {
		t.Errorf("before the sweep, check found %v; want the 3 overdue holds", billing.Check(a))
	}
	expired, err := (&billing.Sweeper{Ledger: b.store, Batch: 2}).SweepOnce(b.ctx)
	if err != nil || expired != 3 {
		t.Fatalf("sweep expired %d, %v; want 3", expired, err)
	}
	for _, h := range placed[7:] {
		got, err := b.store.Hold(b.ctx, h.ID)
		if err != nil || got.Status != billing.HoldExpired {
			t.Fatalf("hold %d = %+v, %v; want expired", h.ID, got, err)
		}
	}
	bal = b.balance(t, acc, billing.BucketCredit)
	if bal.Held != 0 || bal.Posted != billing.Micro-captured || bal.Available != billing.Micro-captured {
		t.Fatalf("after settling: %+v, want posted = available = %s", bal, billing.Micro-captured)
	}
	if r := b.balance(t, acc, billing.BucketRouted); r.Posted != 3*billing.Micro || r.Held != 0 {
		t.Fatalf("routed bucket moved: %+v", r)
	}
	b.mustCheck(t)
}

func testHoldLifecycle(t *testing.T, h Harness) {
	b := setup(t, h)
	acc := b.fund(t, "discord:9", billing.BucketRouted, billing.Micro)
	place := func(key string, ttl time.Duration) billing.Hold {
		t.Helper()
		h, err := b.store.PlaceHold(b.ctx, billing.HoldRequest{AccountID: acc, Bucket: billing.BucketRouted, Amount: 200_000, TTL: ttl, Key: key, Reference: "run:" + key})
		if err != nil {
			t.Fatalf("PlaceHold %s: %v", key, err)
		}
		return h
	}

	// Partial capture releases the rest; a repeat with the same key is a no-op.
	h1 := place("h1", time.Hour)
	c, err := b.store.CaptureHold(b.ctx, billing.CaptureRequest{HoldID: h1.ID, Amount: 75_000, Key: "c1"})
	if err != nil || c.Status != billing.HoldCaptured || c.Captured != 75_000 || c.Released() != 125_000 {
		t.Fatalf("partial capture = %+v, %v", c, err)
	}
	again, err := b.store.CaptureHold(b.ctx, billing.CaptureRequest{HoldID: h1.ID, Amount: 75_000, Key: "c1"})
	if err != nil || !again.Replayed || again.Captured != 75_000 {
		t.Fatalf("repeated capture = %+v, %v; want a replay", again, err)
	}
	if _, err := b.store.CaptureHold(b.ctx, billing.CaptureRequest{HoldID: h1.ID, Amount: 80_000, Key: "c1"}); !errors.Is(err, billing.ErrIdempotencyConflict) {
		t.Fatalf("same key, other amount = %v, want ErrIdempotencyConflict", err)
	}
	if _, err := b.store.CaptureHold(b.ctx, billing.CaptureRequest{HoldID: h1.ID, Amount: 75_000, Key: "c1-other"}); !errors.Is(err, billing.ErrHoldResolved) {
		t.Fatalf("second capture with a new key = %v, want ErrHoldResolved", err)
	}
	if _, err := b.store.ReleaseHold(b.ctx, billing.ReleaseRequest{HoldID: h1.ID, Key: "r1"}); !errors.Is(err, billing.ErrHoldResolved) {
		t.Fatalf("release after capture = %v, want ErrHoldResolved", err)
	}

	// Capture after release fails.
	h2 := place("h2", time.Hour)
	if _, err := b.store.ReleaseHold(b.ctx, billing.ReleaseRequest{HoldID: h2.ID, Key: "r2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.CaptureHold(b.ctx, billing.CaptureRequest{HoldID: h2.ID, Amount: 1, Key: "c2"}); !errors.Is(err, billing.ErrHoldResolved) {
		t.Fatalf("capture after release = %v, want ErrHoldResolved", err)
	}

	// Capture more than held fails and changes nothing.
	h3 := place("h3", time.Hour)
	if _, err := b.store.CaptureHold(b.ctx, billing.CaptureRequest{HoldID: h3.ID, Amount: 200_001, Key: "c3"}); !errors.Is(err, billing.ErrCaptureExceedsHold) {
		t.Fatalf("over-capture = %v, want ErrCaptureExceedsHold", err)
	}
	if _, err := b.store.CaptureHold(b.ctx, billing.CaptureRequest{HoldID: 99999, Amount: 1, Key: "c-missing"}); !errors.Is(err, billing.ErrUnknownHold) {
		t.Fatalf("capture of a missing hold = %v, want ErrUnknownHold", err)
	}

	// Past its TTL a hold cannot be captured, before or after the sweeper.
	h4 := place("h4", time.Minute)
	b.clock.Advance(time.Minute)
	if _, err := b.store.CaptureHold(b.ctx, billing.CaptureRequest{HoldID: h4.ID, Amount: 1, Key: "c4"}); !errors.Is(err, billing.ErrHoldExpired) {
		t.Fatalf("capture at expiry = %v, want ErrHoldExpired", err)
	}
	if n, err := (&billing.Sweeper{Ledger: b.store}).SweepOnce(b.ctx); err != nil || n != 1 {
		t.Fatalf("sweep = %d, %v; want 1", n, err)
	}
	if _, err := b.store.CaptureHold(b.ctx, billing.CaptureRequest{HoldID: h4.ID, Amount: 1, Key: "c4b"}); !errors.Is(err, billing.ErrHoldResolved) {
		t.Fatalf("capture after expiry = %v, want ErrHoldResolved", err)
	}
	// h3 is still open (TTL 1h): capture it in full.
	if _, err := b.store.CaptureHold(b.ctx, billing.CaptureRequest{HoldID: h3.ID, Amount: 200_000, Key: "c3b"}); err != nil {
		t.Fatal(err)
	}
	bal := b.balance(t, acc, billing.BucketRouted)
	if want := billing.Micro - 75_000 - 200_000; bal.Posted != want || bal.Held != 0 {
		t.Fatalf("balance = %+v, want posted %s and nothing held", bal, want)
	}
	entries, err := b.store.Entries(b.ctx, acc, 100)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[billing.EntryKind]int{}
	for _, e := range entries {
		kinds[e.Kind]++
	}
	want := map[billing.EntryKind]int{billing.KindTopup: 1, billing.KindHold: 4, billing.KindCapture: 2, billing.KindRelease: 3}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Fatalf("entry kinds = %v, want %v", kinds, want)
	}
	b.mustCheck(t)
}

func testBucketsNeverLeak(t *testing.T, h Harness) {
	b := setup(t, h)
	acc := b.fund(t, "telegram:5", billing.BucketCredit, billing.Micro)
	if _, err := b.store.PlaceHold(b.ctx, billing.HoldRequest{AccountID: acc, Bucket: billing.BucketRouted, Amount: 1, TTL: time.Hour, Key: "r"}); !errors.Is(err, billing.ErrInsufficientFunds) {
		t.Fatalf("routed hold paid by credit? err = %v", err)
	}
	hold, err := b.store.PlaceHold(b.ctx, billing.HoldRequest{AccountID: acc, Bucket: billing.BucketCredit, Amount: 400_000, TTL: time.Hour, Key: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.CaptureHold(b.ctx, billing.CaptureRequest{HoldID: hold.ID, Amount: 300_000, Key: "cc"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.Post(b.ctx, billing.PostRequest{AccountID: acc, Bucket: billing.BucketCredit, Kind: billing.KindRefund, Amount: 100_000, Key: "refund", Reference: "receipt:x"}); err != nil {
		t.Fatal(err)
	}
	if r := b.balance(t, acc, billing.BucketRouted); r.Posted != 0 || r.Held != 0 {
		t.Fatalf("routed bucket touched: %+v", r)
	}
	if c := b.balance(t, acc, billing.BucketCredit); c.Posted != 800_000 {
		t.Fatalf("credit posted %s, want $0.80", c.Posted)
	}
	entries, _ := b.store.Entries(b.ctx, acc, 100)
	for _, e := range entries {
		if e.Bucket != billing.BucketCredit {
			t.Fatalf("entry in the wrong bucket: %+v", e)
		}
	}
	b.mustCheck(t)
}

func testLinkCodes(t *testing.T, h Harness) {
	b := setup(t, h)
	tg := billing.Identity{Platform: "telegram", ExternalID: "1"}
	dc := billing.Identity{Platform: "discord", ExternalID: "2"}
	acc := b.fund(t, "telegram:1", billing.BucketRouted, billing.Micro)
	if err := b.store.CreateLinkCode(b.ctx, dc, "NOACCOUNT", time.Minute, 5); !errors.Is(err, billing.ErrUnknownAccount) {
		t.Fatalf("code for an identity without account = %v", err)
	}
	for i := range 5 {
		if err := b.store.CreateLinkCode(b.ctx, tg, fmt.Sprintf("CODE%04d", i), time.Minute, 5); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.store.CreateLinkCode(b.ctx, tg, "CODE9999", time.Minute, 5); !errors.Is(err, billing.ErrRateLimited) {
		t.Fatalf("sixth code in an hour = %v", err)
	}
	if _, err := b.store.RedeemLinkCode(b.ctx, "NOPE", dc, 10); !errors.Is(err, billing.ErrNotFound) {
		t.Fatalf("unknown code = %v", err)
	}
	got, err := b.store.RedeemLinkCode(b.ctx, "CODE0000", dc, 10)
	if err != nil || got != acc {
		t.Fatalf("redeem = %d, %v", got, err)
	}
	if _, err := b.store.RedeemLinkCode(b.ctx, "CODE0000", billing.Identity{Platform: "cli", ExternalID: "x"}, 10); !errors.Is(err, billing.ErrNotFound) {
		t.Fatalf("second use = %v", err)
	}
	b.clock.Advance(2 * time.Minute)
	if _, err := b.store.RedeemLinkCode(b.ctx, "CODE0001", billing.Identity{Platform: "cli", ExternalID: "y"}, 10); !errors.Is(err, billing.ErrNotFound) {
		t.Fatalf("expired code = %v", err)
	}
	if a, _ := b.store.AccountOf(b.ctx, dc); a != acc {
		t.Fatalf("discord:2 is on account %d, want %d", a, acc)
	}
	// Guessing is limited per identity: wrong codes count, and once the
	// hour's attempts are spent even a good code is refused until later.
	guesser := billing.Identity{Platform: "discord", ExternalID: "3"}
	if err := b.store.CreateLinkCode(b.ctx, dc, "GOODCODE", 3*time.Hour, 5); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := b.store.RedeemLinkCode(b.ctx, fmt.Sprintf("BAD%05d", i), guesser, 3); !errors.Is(err, billing.ErrNotFound) {
			t.Fatalf("guess %d = %v", i, err)
		}
	}
	if _, err := b.store.RedeemLinkCode(b.ctx, "GOODCODE", guesser, 3); !errors.Is(err, billing.ErrRateLimited) {
		t.Fatalf("fourth attempt in the hour = %v", err)
	}
	b.clock.Advance(61 * time.Minute)
	if _, err := b.store.RedeemLinkCode(b.ctx, "GOODCODE", guesser, 3); !errors.Is(err, billing.ErrLinkConflict) {
		// discord:3 cannot join discord:2's account (same platform): the
		// attempt got past the limit and reached the code.
		t.Fatalf("attempt an hour later = %v", err)
	}
}

func testWatchlists(t *testing.T, h Harness) {
	b := setup(t, h)
	acc := b.fund(t, "telegram:1", billing.BucketCredit, 1)
	upd := func(name string, fn func([]string, bool, int) ([]string, error)) []string {
		t.Helper()
		out, err := b.store.UpdateWatchlist(b.ctx, acc, name, fn)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	upd("chips", func(s []string, exists bool, n int) ([]string, error) {
		if exists || n != 0 {
			t.Fatalf("new list exists=%v count=%d", exists, n)
		}
		return []string{"NVDA", "AMD"}, nil
	})
	upd("banks", func(s []string, exists bool, n int) ([]string, error) { return []string{"JPM"}, nil })
	upd("chips", func(s []string, exists bool, n int) ([]string, error) {
		if !exists || n != 2 || fmt.Sprint(s) != "[NVDA AMD]" {
			t.Fatalf("existing list = %v %v %d", s, exists, n)
		}
		return append(s, "AVGO"), nil
	})
	if _, err := b.store.UpdateWatchlist(b.ctx, acc, "banks", func([]string, bool, int) ([]string, error) { return nil, errors.New("refused") }); err == nil {
		t.Fatal("fn's error was swallowed")
	}
	upd("banks", func([]string, bool, int) ([]string, error) { return nil, nil }) // delete
	got, err := b.store.Watchlists(b.ctx, acc)
	if err != nil || len(got) != 1 || fmt.Sprint(got["chips"]) != "[NVDA AMD AVGO]" {
		t.Fatalf("watchlists = %v, %v", got, err)
	}
}
